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
//! commas too, as the flag would split them. Every file entry is checked for its shape (unknown
//! key, a list for a one-value option, a non-boolean for a switch) even when a variable or a flag
//! overrides it; its value is parsed only when it is used.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
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
    let path = flags.get_one::<PathBuf>(CONFIG_FILE).cloned().or_else(|| env.get(env::CONFIG).map(PathBuf::from));
    let file = path.map(|path| FileArgs::read(&path)).transpose()?.unwrap_or_default();

    let (mut layered, origins) = lower_layers(&flags, env, file)?;
    layered.insert(0, args[0].clone());
    layered.extend(args.iter().skip(1).cloned());
    let matches = parser.clone().try_get_matches_from(&layered).map_err(|error| condense(error, &args, &origins))?;
    if matches.subcommand_name() == Some(PRINT_CONFIG) {
        action = Action::PrintConfig;
    }
    refuse_redacted(&parser, &matches, &origins)?;
    let config = Config::from_arg_matches(&matches).map_err(|error| condense(error, &args, &origins))?;
    config.validate()?;
    let toml = super::render::effective_toml(&parser, &matches);
    Ok(Loaded { config, action, toml })
}

/// A secret still `"<redacted>"` (a printed configuration reused as it is) is refused, not used.
fn refuse_redacted(command: &clap::Command, matches: &ArgMatches, origins: &Origins) -> Result<(), LoadError> {
    for arg in options(command) {
        let long = arg.get_long().unwrap_or_default();
        for text in matches.get_raw(arg.get_id().as_str()).into_iter().flatten() {
            if let Some(reason) = super::render::still_redacted(arg, &text.to_string_lossy()) {
                let origin = origins.get(long).map_or("from the command line", String::as_str);
                return Err(invalid(long, origin, reason));
            }
        }
    }
    Ok(())
}

/// Flag text for every option the command line leaves unset, from its variable or else from
/// the file, with where each came from.
fn lower_layers(
    flags: &ArgMatches,
    env: &HashMap<String, String>,
    mut file: FileArgs,
) -> Result<(Vec<OsString>, Origins), LoadError> {
    let mut layered = Vec::new();
    let mut origins = Origins::new();
    for arg in options(&command()) {
        let long = arg.get_long().unwrap_or_default();
        let from_file = file.args.remove(long);
        if flags.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let variable = arg.get_env().map(|name| name.to_string_lossy().into_owned());
        if let Some((name, value)) = variable.and_then(|name| env.get(&name).map(|value| (name, value))) {
            let origin = format!("from {name}");
            layered.extend(variable_args(arg, value).map_err(|reason| invalid(long, &origin, &reason))?);
            origins.insert(long.to_owned(), origin);
        } else if let Some(args) = from_file {
            layered.extend(args);
            origins.insert(long.to_owned(), file.origin(long));
        }
    }
    Ok((layered, origins))
}

/// The configuration file turned into flag text per option, every entry checked for its shape
/// (a list only for a list option, a boolean for a switch) whether or not it ends up used.
#[derive(Default)]
struct FileArgs {
    path: PathBuf,
    args: HashMap<String, Vec<OsString>>,
}

impl FileArgs {
    fn read(path: &Path) -> Result<Self, LoadError> {
        let table = read_table(path)?;
        let command = command();
        let mut file = Self { path: path.to_owned(), args: HashMap::new() };
        for (key, value) in &table {
            let Some(arg) = options(&command).find(|arg| arg.get_long() == Some(key)) else {
                return Err(LoadError::File { path: path.to_owned(), reason: format!("unknown key '{key}'") });
            };
            let args = file_args(arg, value).map_err(|reason| invalid(key, &file.origin(key), &reason))?;
            file.args.insert(key.clone(), args);
        }
        Ok(file)
    }

    fn origin(&self, key: &str) -> String {
        format!("from key '{key}' in {}", self.path.display())
    }
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

/// An option given by its bare flag (`--allow-anonymous`), `true` or `false` elsewhere.
pub(super) fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue)
}

/// Flag text for an environment variable's value, read as clap reads variables.
fn variable_args(arg: &Arg, value: &str) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    if is_switch(arg) {
        // `bool::from_str` takes exactly `true` and `false`, as clap does for variables.
        return switch_args(long, value.parse().ok());
    }
    Ok(vec![format!("--{long}={value}").into()])
}

/// Flag text for a switch that a variable or the file turns `on`; `None` when its value is not
/// a boolean.
fn switch_args(long: &str, on: Option<bool>) -> Result<Vec<OsString>, String> {
    match on {
        Some(true) => Ok(vec![format!("--{long}").into()]),
        Some(false) => Ok(vec![]),
        None => Err("expected true or false".into()),
    }
}

/// Flag text for a value from the file: a scalar for a one-value option, a scalar or an array
/// of them for a list option, a boolean for a switch.
fn file_args(arg: &Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    if is_switch(arg) {
        return switch_args(long, value.as_bool());
    }
    if long == "upstream" {
        return upstream_args(value);
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

/// Flag text for the file's upstream rules: `[[upstream]]` tables (keys `url`, `hub`,
/// `category`, `event`, `timeout`), or strings as the flag takes them.
fn upstream_args(value: &toml::Value) -> Result<Vec<OsString>, String> {
    let items: Vec<&toml::Value> = match value {
        toml::Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| match item {
            toml::Value::String(text) => Ok(format!("--upstream={text}").into()),
            toml::Value::Table(table) => {
                let mut pairs = Vec::new();
                for (key, value) in table {
                    let text = match value {
                        toml::Value::String(text) => text.clone(),
                        toml::Value::Array(names) => {
                            let names: Option<Vec<&str>> = names.iter().map(toml::Value::as_str).collect();
                            names.ok_or("a pattern list holds only strings")?.join(",")
                        }
                        _ => return Err(format!("key '{key}' of an [[upstream]] table takes a string")),
                    };
                    if text.contains(';') {
                        return Err(format!("key '{key}' of an [[upstream]] table may not contain ';'"));
                    }
                    pairs.push(format!("{key}={text}"));
                }
                Ok(format!("--upstream={}", pairs.join(";")).into())
            }
            _ => Err("expected [[upstream]] tables".into()),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A file under the system's temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("hubgate-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).expect("write the temporary file");
            Self(path)
        }

        fn flag(&self) -> String {
            format!("--config={}", self.0.display())
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    fn load_ok(args: &[&str], env: &[(&str, &str)]) -> Loaded {
        let args = std::iter::once("gateway").chain(args.iter().copied());
        load(args, &vars(env)).unwrap_or_else(|error| panic!("{error}"))
    }

    fn load_error(args: &[&str], env: &[(&str, &str)]) -> String {
        let args = std::iter::once("gateway").chain(args.iter().copied());
        load(args, &vars(env)).map(|loaded| loaded.config).expect_err("the configuration is refused").to_string()
    }

    #[test]
    fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
        let file = TempFile::new("precedence", "keep-alive-interval = \"20s\"\n");
        let interval = |args: &[&str], env: &[(&str, &str)]| load_ok(args, env).config.keep_alive_interval;

        assert_eq!(interval(&[], &[]), Duration::from_secs(15), "the default");
        assert_eq!(interval(&[&file.flag()], &[]), Duration::from_secs(20), "the file over the default");
        let variable = [("HUBGATE_KEEP_ALIVE_INTERVAL", "25s")];
        assert_eq!(interval(&[&file.flag()], &variable), Duration::from_secs(25), "the variable over the file");
        let flags = [file.flag(), "--keep-alive-interval=28s".into()];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        assert_eq!(interval(&flags, &variable), Duration::from_secs(28), "the flag over the variable");
    }

    #[test]
    fn the_file_can_be_named_by_a_variable_and_sets_options_nothing_else_sets() {
        let file = TempFile::new("by-variable", "listen = \"0.0.0.0:9000\"\nmax-hubs = 7\n");
        let path = file.0.to_string_lossy().into_owned();
        let loaded = load_ok(&["--max-hubs", "8"], &[("HUBGATE_CONFIG", &path)]);
        assert_eq!(loaded.config.listen, "0.0.0.0:9000".parse().expect("an address"));
        assert_eq!(loaded.config.max_hubs, 8, "the flag wins");
    }

    #[test]
    fn a_higher_source_replaces_a_whole_list_rather_than_adding_to_it() {
        let file = TempFile::new("lists", "redis-url = [\"redis://a:1\", \"redis://b:2\"]\n");
        let urls = |args: &[&str], env: &[(&str, &str)]| load_ok(args, env).config.redis_urls;

        assert_eq!(urls(&[&file.flag()], &[]), ["redis://a:1", "redis://b:2"]);
        let variable = [("HUBGATE_REDIS_URL", "redis://c:3,redis://d:4")];
        assert_eq!(urls(&[&file.flag()], &variable), ["redis://c:3", "redis://d:4"]);
        assert_eq!(urls(&[&file.flag(), "--redis-url", "redis://e:5"], &variable), ["redis://e:5"]);
    }

    #[test]
    fn a_switch_turned_off_by_its_variable_stays_off_whatever_the_file_says() {
        let file = TempFile::new("switch", "allow-anonymous = true\nstateful-reconnect = false\n");
        let on = load_ok(&[&file.flag()], &[]).config;
        assert!(on.allow_anonymous && !on.stateful_reconnect);
        let off = load_ok(&[&file.flag()], &[("HUBGATE_ALLOW_ANONYMOUS", "false")]).config;
        assert!(!off.allow_anonymous);
    }

    #[test]
    fn file_problems_name_the_file_and_the_key() {
        let unknown = TempFile::new("unknown", "lisen = \"0.0.0.0:1\"\n");
        let error = load_error(&[&unknown.flag()], &[]);
        assert_eq!(error, format!("--config {}: unknown key 'lisen'", unknown.0.display()));

        let wrong_type = TempFile::new("wrong-type", "max-hubs = \"many\"\n");
        let error = load_error(&[&wrong_type.flag()], &[]);
        assert!(error.starts_with("--max-hubs: invalid value 'many' (from key 'max-hubs' in "), "{error}");

        let list = TempFile::new("list", "listen = [\"0.0.0.0:1\"]\n");
        let error = load_error(&[&list.flag()], &[]);
        assert!(error.starts_with("--listen: takes one value, not a list (from key 'listen' in "), "{error}");
        let overridden = load_error(&[&list.flag(), "--listen", "127.0.0.1:1"], &[]);
        assert_eq!(overridden, error, "a misshapen entry is refused even when a flag overrides it");

        let syntax = TempFile::new("syntax", "listen = \"0.0.0.0:1\"\nmax-hubs = \n");
        let error = load_error(&[&syntax.flag()], &[]);
        assert!(error.starts_with(&format!("--config {}: line 2: invalid TOML", syntax.0.display())), "{error}");

        let error = load_error(&["--config", "/nonexistent/hubgate.toml"], &[]);
        assert!(error.starts_with("--config /nonexistent/hubgate.toml: cannot read: "), "{error}");
    }

    #[test]
    fn value_errors_are_one_line_naming_the_option_and_where_the_value_came_from() {
        let cases = [
            (
                vec!["--keep-alive-interval", "abc"],
                vec![],
                "--keep-alive-interval: invalid value 'abc': not a duration",
            ),
            (vec![], vec![("HUBGATE_LISTEN", "nowhere")], "--listen: invalid value 'nowhere' (from HUBGATE_LISTEN): "),
            (
                vec!["--backplane", "carrier"],
                vec![],
                "--backplane: invalid value 'carrier': expected one of memory, redis",
            ),
            (vec![], vec![("HUBGATE_DETAILED_ERRORS", "yes")], "--detailed-errors: expected true or false"),
            (vec!["--client-timeout", "1s"], vec![], "--client-timeout: must be longer than --keep-alive-interval"),
        ];
        for (args, env, expected) in cases {
            let error = load_error(&args, &env);
            assert!(error.starts_with(expected) && !error.contains('\n'), "{args:?} {env:?}: {error}");
        }
    }

    #[test]
    fn the_edge_settings_load_from_toml_keys_and_print_back() {
        let file = TempFile::new(
            "edge",
            "tls-cert = \"/etc/hubgate/tls.crt\"\n\
             tls-key = \"/etc/hubgate/tls.key\"\n\
             tls-handshake-timeout = \"3s\"\n\
             cluster-secret = \"a-cluster-secret-of-length\"\n\
             advertise-url = \"http://10.0.0.7:8080\"\n\
             cors-allowed-origins = [\"https://app.example\", \"https://admin.example\"]\n\
             max-connections = 5000\n\
             max-connections-per-user = 3\n\
             connection-rate-per-ip = \"20/s,burst=40\"\n\
             trusted-proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n",
        );
        let loaded = load_ok(&["config", &file.flag()], &[]);
        let config = &loaded.config;
        let files = config.tls_files().expect("both TLS files");
        assert_eq!((files.cert, files.key), ("/etc/hubgate/tls.crt".into(), "/etc/hubgate/tls.key".into()));
        assert_eq!(config.tls_handshake_timeout, Duration::from_secs(3));
        assert_eq!(config.cluster_secret.as_deref(), Some("a-cluster-secret-of-length"));
        assert_eq!(config.advertise_url.as_deref(), Some("http://10.0.0.7:8080"));
        assert_eq!(config.cors_allowed_origins, ["https://app.example", "https://admin.example"]);
        assert_eq!((config.max_connections, config.max_connections_per_user), (5000, 3));
        assert!(config.connection_rate_per_ip.is_some());
        assert_eq!(config.trusted_proxies.len(), 2);

        let toml = loaded.to_toml();
        for line in [
            "tls-cert = \"/etc/hubgate/tls.crt\"",
            "tls-handshake-timeout = \"3s\"",
            "cluster-secret = \"<redacted>\"",
            "cors-allowed-origins = [\"https://app.example\", \"https://admin.example\"]",
            "connection-rate-per-ip = \"20/s,burst=40\"",
        ] {
            assert!(toml.lines().any(|l| l == line), "{line} in\n{toml}");
        }
        assert!(!toml.contains("a-cluster-secret-of-length"), "{toml}");
    }

    #[test]
    fn a_printed_configuration_reused_with_its_secrets_still_redacted_is_refused() {
        let printed = load_ok(
            &["config", "--cluster-secret", "a-cluster-secret-of-length", "--redis-url", "redis://u:pw@h:1"],
            &[("HUBGATE_JWT_SECRET", "s3cret")],
        )
        .to_toml()
        .to_owned();
        let file = TempFile::new("reused", &printed);
        let error = load_error(&[&file.flag()], &[]);
        assert!(error.contains("jwt-secret") && error.contains("put the real secret in"), "{error}");

        let fixed = printed.replace("jwt-secret = \"<redacted>\"", "jwt-secret = \"s3cret\"");
        let fixed = fixed.replace("cluster-secret = \"<redacted>\"", "cluster-secret = \"a-cluster-secret-of-length\"");
        let error = load_error(&[&TempFile::new("reused-url", &fixed).flag()], &[]);
        assert!(error.contains("redis-url") && error.contains("password"), "{error}");

        let fixed = fixed.replace("u:<redacted>@", "u:pw@");
        let config = load_ok(&[&TempFile::new("reused-fixed", &fixed).flag()], &[]).config;
        assert_eq!(config.cluster_secret.as_deref(), Some("a-cluster-secret-of-length"));
    }

    #[test]
    fn config_prints_the_effective_values_with_secrets_redacted() {
        let loaded = load_ok(
            &["config", "--jwt-secret", "s3cret", "--redis-url", "redis://user:hunter2@h:1"],
            &[("HUBGATE_ACCESS_KEY", "k3y"), ("HUBGATE_MAX_HUBS", "9")],
        );
        assert_eq!(loaded.action, Action::PrintConfig);
        let toml = loaded.to_toml();
        for line in ["jwt-secret = \"<redacted>\"", "access-key = \"<redacted>\"", "max-hubs = 9"] {
            assert!(toml.lines().any(|l| l == line), "{line} in\n{toml}");
        }
        assert!(toml.contains("redis-url = [\"redis://user:<redacted>@h:1\"]"), "{toml}");
        assert!(["s3cret", "k3y", "hunter2"].iter().all(|secret| !toml.contains(secret)), "{toml}");
        assert!(toml.lines().any(|l| l == "# node-id is not set"), "{toml}");
    }

    #[test]
    fn the_subcommand_may_come_before_or_after_the_options() {
        assert_eq!(load_ok(&["config", "--max-hubs", "3"], &[]).action, Action::PrintConfig);
        assert_eq!(load_ok(&["--max-hubs", "3", "config"], &[]).action, Action::PrintConfig);
        assert_eq!(load_ok(&["--max-hubs", "3"], &[]).action, Action::Serve);
    }

    #[test]
    fn the_printed_configuration_reads_back_to_the_same_configuration() {
        let first = load_ok(
            &[
                "--transports",
                "sse",
                "--flush-delay",
                "2ms",
                "--allow-anonymous",
                "--node-id",
                "n-1",
                "--max-connections",
                "7",
                "--connection-rate-per-ip",
                "5/s,burst=9",
                "--trusted-proxies",
                "10.0.0.0/8,::1",
            ],
            &[("HUBGATE_RELAY_METHODS", "SendToAll,SendToGroup")],
        );
        let file = TempFile::new("round-trip", first.to_toml());
        let second = load_ok(&[&file.flag()], &[]);
        assert_eq!(second.to_toml(), first.to_toml());
        for line in [
            "max-connections = 7",
            "connection-rate-per-ip = \"5/s,burst=9\"",
            "trusted-proxies = [\"10.0.0.0/8\", \"::1\"]",
        ] {
            assert!(first.to_toml().lines().any(|l| l == line), "{line} in\n{}", first.to_toml());
        }
        assert_eq!(format!("{:?}", second.config), format!("{:?}", first.config));
    }

    #[test]
    fn upstream_rules_come_from_tables_in_the_file_or_the_flag_and_print_back() {
        let file = TempFile::new(
            "upstream",
            "[[upstream]]\nurl = \"http://b/{hub}/{event}\"\nhub = [\"chat\", \"news\"]\nevent = \"connect,*\"\ntimeout = \"5s\"\n\n[[upstream]]\nurl = \"https://other/\"\n",
        );
        let loaded = load_ok(&[&file.flag()], &[]);
        let specs: Vec<String> = loaded.config.upstream.iter().map(|rule| rule.spec()).collect();
        assert_eq!(
            specs,
            [
                "url=http://b/{hub}/{event};hub=chat,news;category=*;event=connect,*;timeout=5s",
                "url=https://other/;hub=*;category=*;event=*;timeout=30s",
            ]
        );
        let printed = TempFile::new("upstream-printed", loaded.to_toml());
        assert_eq!(
            format!("{:?}", load_ok(&[&printed.flag()], &[]).config.upstream),
            format!("{:?}", loaded.config.upstream)
        );
        let flag = load_ok(&[&file.flag(), "--upstream", "http://flag/{event}"], &[]);
        assert_eq!(flag.config.upstream.len(), 1, "a flag replaces the file's rules");
        let bad = load(["gateway", "--upstream", "ftp://x"], &vars(&[])).unwrap_err().to_string();
        assert!(bad.contains("--upstream") && bad.contains("http://"), "{bad}");
    }

    #[test]
    fn the_example_file_lists_every_option_with_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/hubgate.example.toml");
        let text = std::fs::read_to_string(path).expect("read the example file");
        for arg in options(&command()) {
            let key = arg.get_long().unwrap_or_default();
            let listed = text.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = ")));
            assert!(listed, "{key} is missing from {path}");
        }
        let loaded = load_ok(&["--config", path], &[]);
        assert_eq!(format!("{:?}", loaded.config), format!("{:?}", Config::default()));
    }
}
