//! The effective configuration printed back as TOML (`gateway config`).
//!
//! Values are the text each option was given (or its default), so the output reads like what
//! was configured (`15s`, not `15000ms`) and parses back to the same configuration. Options whose
//! environment value clap hides (`hide_env_values`: the token and REST API keys) are secrets and
//! print as `"<redacted>"`, as does the password part of every Redis URL. Loading refuses that
//! marker as a secret, so a printed file reused as it is fails loudly instead of running with
//! the secret "<redacted>".

use std::any::TypeId;
use std::fmt::Write;

use clap::{Arg, ArgAction, ArgMatches};

use super::load::is_switch;
// What a secret prints as: the marker request logs use too.
use crate::request_log::REDACTED;

/// Every option of `command` as a `key = value` line, those without a value as comments.
pub(super) fn effective_toml(command: &clap::Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# hubgate effective configuration: built-in defaults, then the --config file, then HUBGATE_*\n\
         # variables, then flags. Secrets show as \"<redacted>\"; put real ones in before reusing it.\n",
    );
    for arg in super::load::options(command) {
        let key = arg.get_long().unwrap_or_default();
        let line = match value(arg, matches) {
            Some(value) => format!("{key} = {value}"),
            None => format!("# {key} is not set"),
        };
        let _ = writeln!(out, "{line}");
    }
    out
}

fn value(arg: &Arg, matches: &ArgMatches) -> Option<toml::Value> {
    let id = arg.get_id().as_str();
    if is_switch(arg) {
        return Some(toml::Value::Boolean(matches.get_flag(id)));
    }
    let raw: Vec<String> = matches.get_raw(id)?.map(|raw| raw.to_string_lossy().into_owned()).collect();
    let mut items = raw.iter().map(|text| scalar(arg, text));
    match arg.get_action() {
        ArgAction::Append => Some(toml::Value::Array(items.collect())),
        _ => items.next(),
    }
}

fn scalar(arg: &Arg, text: &str) -> toml::Value {
    let kind = arg.get_value_parser().type_id();
    if arg.get_long() == Some("upstream") {
        return upstream_table(text);
    }
    if is_secret(arg) {
        return toml::Value::String(REDACTED.into());
    }
    if hides_password(arg) {
        return toml::Value::String(redact_password(text));
    }
    if kind == TypeId::of::<bool>() {
        if let Ok(flag) = text.parse() {
            return toml::Value::Boolean(flag);
        }
    }
    let integers = [TypeId::of::<usize>(), TypeId::of::<u64>(), TypeId::of::<u32>(), TypeId::of::<u16>()];
    if integers.iter().any(|id| kind == *id) {
        if let Ok(number) = text.parse() {
            return toml::Value::Integer(number);
        }
    }
    toml::Value::String(text.into())
}

/// An upstream rule as the table `[[upstream]]` takes (printed inline), with every key.
fn upstream_table(text: &str) -> toml::Value {
    let Ok(rule) = text.parse::<crate::upstream::rules::Rule>() else { return toml::Value::String(text.into()) };
    let mut table = toml::Table::new();
    for pair in rule.spec().split(';') {
        if let Some((key, value)) = pair.split_once('=') {
            table.insert(key.into(), toml::Value::String(value.into()));
        }
    }
    toml::Value::Table(table)
}

/// Whether `arg`'s whole value prints as `"<redacted>"`: the options clap hides the variables of.
fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// Whether `arg`'s value prints with its password part redacted (a Redis URL).
fn hides_password(arg: &Arg) -> bool {
    arg.get_long() == Some("redis-url")
}

/// Why `text`, given for `arg`, cannot be used: it still holds the marker this module printed
/// in place of a secret, so it came from a printed configuration nobody filled in again.
pub(super) fn still_redacted(arg: &Arg, text: &str) -> Option<&'static str> {
    if is_secret(arg) && text == REDACTED {
        return Some("is still \"<redacted>\" as `gateway config` printed it: put the real secret in");
    }
    if hides_password(arg) && text.contains(REDACTED) {
        return Some("its password is still \"<redacted>\" as `gateway config` printed it");
    }
    None
}

/// `redis://user:secret@host` → `redis://user:<redacted>@host`; a user part without a colon is
/// taken for a password (some clients read it so) and redacted whole.
pub(super) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.into() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.into() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{REDACTED}@{host}"),
        None => format!("{scheme}://{REDACTED}@{host}"),
    }
}
