//! Loading a [`Config`] from flags, environment variables and a TOML file, in that order.
//!
//! How the order is kept, with clap doing all the parsing and checking:
//!
//! 1. The command line is parsed alone (a copy of the command with its `env` attributes
//!    removed), so [`ArgMatches::value_source`] says which options the flags set.
//! 2. For every other option, its variable in the given environment map, or else its key in the
//!    file, is turned into flag text (`--keep-alive-interval=20s`, one `--redis-url=…` per list
//!    entry, a bare `--allow-anonymous` for `true`) and put before the real arguments.
//! 3. Those arguments are parsed once more, so a value from the environment or the file goes
//!    through the same value parsers, conflicts and requirements as a flag, and its error says
//!    where it came from.
//!
//! Taking the environment as a map keeps tests away from the process environment. Variables are
//! read the way clap reads them (a list variable is comma-separated; a switch such as
//! `HUBGATE_ALLOW_ANONYMOUS` is `true` or `false`), and list entries in the file are split at
//! commas too, as the flag would split them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, CommandFactory, FromArgMatches};
use thiserror::Error;

use super::{env, Config, ConfigError};

/// The name of the subcommand that prints the effective configuration.
const PRINT_CONFIG: &str = "config";
/// The id and long name of the option naming the configuration file.
const CONFIG_FILE: &str = "config";

/// What the command line asks the binary to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the gateway (no subcommand).
    Serve,
    /// `gateway config`: print [`Loaded::to_toml`] and exit without binding.
    PrintConfig,
}

/// A validated configuration and what to do with it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub action: Action,
    toml: String,
}

impl Loaded {
    /// The effective configuration as a TOML file that `--config` accepts: every option in
    /// `--help` order, secrets (and passwords in Redis URLs) replaced by `"<redacted>"`, options
    /// without a value as comments.
    pub fn to_toml(&self) -> &str {
        &self.toml
    }
}

/// Why no configuration could be loaded. Every variant but [`LoadError::Display`] is one line
/// naming the option or the file; the binary prints it and exits with code 2.
#[derive(Debug, Error)]
pub enum LoadError {
    /// `--help` or `--version`: not a failure; print it with [`clap::Error::exit`].
    #[error("{0}")]
    Display(clap::Error),
    /// A value that does not parse, an unknown flag, a conflict: `--option: reason`.
    #[error("{0}")]
    Invalid(String),
    /// The configuration file cannot be read, is not TOML or has an unknown key.
    #[error("--config {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// The values parse but cannot work together ([`Config::validate`]).
    #[error(transparent)]
    Rule(#[from] ConfigError),
}

/// The full command line: [`Config`]'s options plus `--config FILE` and the `config` subcommand.
pub fn command() -> clap::Command {
    Config::command()
        .arg(
            Arg::new(CONFIG_FILE)
                .long(CONFIG_FILE)
                .env(env::CONFIG)
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "TOML file of options, keyed by long flag name (listen = \"0.0.0.0:8080\"); flags and \
                     HUBGATE_* variables override it. Default: none.",
                ),
        )
        .subcommand(
            clap::Command::new(PRINT_CONFIG)
                .about("Print the effective configuration as TOML (secrets redacted) and exit without binding"),
        )
        .disable_help_subcommand(true)
}

/// Loads and validates the configuration from `args` (the program name first), the environment
/// `env` and the file that `--config` or `HUBGATE_CONFIG` names.
pub fn load<I, T>(args: I, env: &HashMap<String, String>) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.is_empty() {
        args.push("gateway".into());
    }
    // `gateway config --listen …` reads better than `gateway --listen … config`; accept both.
    let mut action = Action::Serve;
    if args.get(1).is_some_and(|arg| arg == PRINT_CONFIG) {
        args.remove(1);
        action = Action::PrintConfig;
    }
    let parser = command().mut_args(|arg| arg.env(None));
    let flags = parser.clone().try_get_matches_from(&args).map_err(|error| condense(error, &args, &Origins::new()))?;

    let file = match flags.get_one::<PathBuf>(CONFIG_FILE).cloned().or_else(|| env.get(env::CONFIG).map(PathBuf::from))
    {
        Some(path) => Some((read_table(&path)?, path)),
        None => None,
    };
    if let Some((table, path)) = &file {
        if let Some(key) = table.keys().find(|key| !options(&parser).any(|arg| arg.get_long() == Some(key))) {
            return Err(LoadError::File { path: path.clone(), reason: format!("unknown key '{key}'") });
        }
    }
    let mut layered = vec![args[0].clone()];
    let mut origins = Origins::new();
    let full = command();
    for arg in options(&full) {
        let (id, long) = (arg.get_id().as_str(), arg.get_long().unwrap_or_default());
        if flags.value_source(id) == Some(ValueSource::CommandLine) {
            continue;
        }
        let variable = arg.get_env().map(|name| name.to_string_lossy().into_owned());
        if let Some((name, value)) = variable.and_then(|name| env.get(&name).map(|value| (name, value))) {
            let origin = format!("from {name}");
            layered.extend(variable_args(arg, value).map_err(|reason| invalid(long, &origin, &reason))?);
            origins.insert(long.to_owned(), origin);
        } else if let Some((table, path)) = &file {
            if let Some(value) = table.get(long) {
                let origin = format!("from key '{long}' in {}", path.display());
                layered.extend(file_args(arg, value).map_err(|reason| invalid(long, &origin, &reason))?);
                origins.insert(long.to_owned(), origin);
            }
        }
    }
    layered.extend(args.iter().skip(1).cloned());

    let matches = parser.clone().try_get_matches_from(&layered).map_err(|error| condense(error, &args, &origins))?;
    if matches.subcommand_name() == Some(PRINT_CONFIG) {
        action = Action::PrintConfig;
    }
    let config = Config::from_arg_matches(&matches).map_err(|error| condense(error, &args, &origins))?;
    config.validate()?;
    let toml = super::render::effective_toml(&parser, &matches);
    Ok(Loaded { config, action, toml })
}

/// Where each option's value came from when not from a flag, e.g. `from HUBGATE_LISTEN`,
/// keyed by long name.
type Origins = HashMap<String, String>;

/// The configuration options, without `--help`, `--version` and `--config`.
pub(super) fn options(command: &clap::Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|arg| arg.get_long().is_some_and(|long| !matches!(long, "help" | "version" | CONFIG_FILE)))
}

/// A value of the wrong shape; not echoed, since it may be a secret.
fn invalid(long: &str, origin: &str, reason: &str) -> LoadError {
    LoadError::Invalid(format!("--{long}: {reason} ({origin})"))
}

fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue)
}

/// Flag text for an environment variable's value, read as clap reads variables.
fn variable_args(arg: &Arg, value: &str) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    if is_switch(arg) {
        return match value {
            "true" => Ok(vec![format!("--{long}").into()]),
            "false" => Ok(vec![]),
            _ => Err("expected true or false".into()),
        };
    }
    Ok(vec![format!("--{long}={value}").into()])
}

/// Flag text for a value from the file: a scalar for a one-value option, a scalar or an array
/// of them for a list option, a boolean for a switch.
fn file_args(arg: &Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    if is_switch(arg) {
        return match value {
            toml::Value::Boolean(true) => Ok(vec![format!("--{long}").into()]),
            toml::Value::Boolean(false) => Ok(vec![]),
            _ => Err("expected true or false".into()),
        };
    }
    let items = match value {
        toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items.iter().collect(),
        toml::Value::Array(_) => return Err("takes one value, not a list".into()),
        scalar => vec![scalar],
    };
    items
        .into_iter()
        .map(|item| match item {
            toml::Value::String(text) => Ok(format!("--{long}={text}").into()),
            toml::Value::Integer(_) | toml::Value::Boolean(_) => Ok(format!("--{long}={item}").into()),
            _ => Err("expected a string, an integer or true/false".into()),
        })
        .collect()
}

/// The configuration file as a TOML table; the error is one line with the line number.
fn read_table(path: &Path) -> Result<toml::Table, LoadError> {
    let file_error = |reason: String| LoadError::File { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|error| file_error(format!("cannot read: {error}")))?;
    text.parse::<toml::Table>().map_err(|error| {
        let line = error.span().map_or(1, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        file_error(format!("line {line}: invalid TOML: {}", error.message().trim().replace('\n', " ")))
    })
}

/// One line for a clap error, naming the option and where its value came from; help and
/// version pass through for printing (rendered with the variables, as users expect in help).
fn condense(error: clap::Error, args: &[OsString], origins: &Origins) -> LoadError {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return LoadError::Display(command().try_get_matches_from(args).err().unwrap_or(error));
        }
        _ => {}
    }
    let context = |kind| error.get(kind).map(ToString::to_string);
    let option = context(ContextKind::InvalidArg).map(|arg| arg.split(' ').next().unwrap_or_default().to_owned());
    let value = context(ContextKind::InvalidValue);
    if let (Some(option), Some(value)) = (option, value) {
        let origin = origins.get(option.trim_start_matches('-')).map(|o| format!(" ({o})")).unwrap_or_default();
        let reason = match (error.get(ContextKind::ValidValue), std::error::Error::source(&error)) {
            (Some(ContextValue::Strings(valid)), _) => format!("expected one of {}", valid.join(", ")),
            (_, Some(source)) => source.to_string(),
            _ => "not accepted".into(),
        };
        return LoadError::Invalid(format!("{option}: invalid value '{value}'{origin}: {reason}"));
    }
    let text = error.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty() && !line.starts_with("tip:"))
        .collect();
    LoadError::Invalid(lines.join(" ").trim_start_matches("error: ").to_owned())
}
