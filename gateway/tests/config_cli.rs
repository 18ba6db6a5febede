//! The `gateway` binary's configuration surface: `--help` states every default, `gateway config`
//! prints the merged configuration (file < variables < flags) with secrets redacted and reads
//! back unchanged, and an invalid value ends the process with one line and code 2 before any
//! port is bound.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::any::TypeId;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use clap::CommandFactory;
use gateway::Config;
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(10);

/// Runs the binary with `args` and exactly the variables `env` (none inherited), until it exits.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    tokio::time::timeout(DEADLINE, child.wait_with_output()).await.expect("the gateway exits in time").unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `contents` to a file named `name` in this test binary's scratch directory.
fn write_file(name: &str, contents: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("config-cli-{name}.toml"));
    std::fs::write(&path, contents).unwrap();
    path
}

/// The lines of `--help` that describe `--long`, up to the next option.
fn help_block<'a>(help: &'a str, long: &str) -> Vec<&'a str> {
    let heading = format!("--{long}");
    let mut lines = help.lines().skip_while(|line| line.trim_start().split([' ', ',']).next() != Some(&heading));
    let first = lines.next().into_iter();
    first.chain(lines.take_while(|line| !is_option_heading(line))).collect()
}

/// `--name …` or `-h, --help`, not a `- value: …` line of an option's possible values.
fn is_option_heading(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("--") || (line.starts_with('-') && line.chars().nth(1).is_some_and(|c| c.is_ascii_alphanumeric()))
}

#[tokio::test]
async fn help_states_the_default_and_unit_of_every_option() {
    let output = run(&["--help"], &[]).await;
    assert!(output.status.success());
    let help = text(&output.stdout);
    let command = gateway::config::command();
    let options = Config::command().get_arguments().cloned().collect::<Vec<_>>();
    let config_file = command.get_arguments().find(|arg| arg.get_long() == Some("config")).unwrap().clone();
    for arg in options.iter().chain([&config_file]) {
        let long = arg.get_long().unwrap();
        let block = help_block(&help, long).join("\n");
        assert!(!block.is_empty(), "--{long} is missing from --help");
        let stated = ["[default: ", "Default: none", "Default: off", "default: none"].iter().any(|s| block.contains(s));
        assert!(stated, "--{long} states no default:\n{block}");
        if arg.get_value_parser().type_id() == TypeId::of::<Duration>() {
            let default = arg.get_default_values()[0].to_string_lossy().into_owned();
            assert!(default.ends_with(char::is_alphabetic), "--{long}'s default {default} has no unit");
        }
    }
}

#[tokio::test]
async fn config_prints_the_winning_value_of_each_source_with_secrets_redacted() {
    let file = write_file(
        "sources",
        "listen = \"0.0.0.0:9100\"\nmax-hubs = 5\nkeep-alive-interval = \"20s\"\njwt-secret = \"file-secret\"\n\
         redis-url = [\"redis://user:pa55@redis-a:6379\", \"redis://redis-b:6379\"]\n",
    );
    let file = file.to_str().unwrap();
    let env = [("HUBGATE_MAX_HUBS", "6"), ("HUBGATE_KEEP_ALIVE_INTERVAL", "21s"), ("HUBGATE_ACCESS_KEY", "env-key")];
    let output = run(&["config", "--config", file, "--keep-alive-interval", "22s"], &env).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    let expected = [
        "listen = \"0.0.0.0:9100\"",     // only the file sets it
        "max-hubs = 6",                  // the variable beats the file
        "keep-alive-interval = \"22s\"", // the flag beats both
        "client-timeout = \"30s\"",      // nobody sets it
        "jwt-secret = \"<redacted>\"",   // a secret from the file
        "access-key = \"<redacted>\"",   // a secret from a variable
        "redis-url = [\"redis://user:<redacted>@redis-a:6379\", \"redis://redis-b:6379\"]",
    ];
    for line in expected {
        assert!(printed.lines().any(|l| l == line), "expected `{line}` in\n{printed}");
    }
    assert!(["file-secret", "env-key", "pa55"].iter().all(|secret| !printed.contains(secret)), "{printed}");

    let as_printed = write_file("reused-as-printed", &printed);
    let output = run(&["config", "--config", as_printed.to_str().unwrap()], &[]).await;
    assert_ne!(output.status.code(), Some(0), "a secret still \"<redacted>\" is refused");
    assert!(text(&output.stderr).contains("put the real secret in"), "{}", text(&output.stderr));

    let again = write_file("round-trip", &printed.replace("<redacted>", "a-refilled-secret"));
    let output = run(&["config", "--config", again.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        printed,
        "with its secrets put back, the printed configuration reads back unchanged"
    );
}

/// Flags and variables that must be refused, and how stderr starts.
struct Case<'a> {
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    stderr: &'a str,
}

#[tokio::test]
async fn an_invalid_value_ends_the_process_with_one_line_and_code_2_before_binding() {
    let wrong_type = write_file("wrong-type", "max-post-body = \"big\"\n");
    let cases = [
        Case {
            args: &["--keep-alive-interval", "abc"],
            env: &[],
            stderr: "gateway: --keep-alive-interval: invalid value 'abc'",
        },
        Case {
            args: &[],
            env: &[("HUBGATE_SEND_TIMEOUT", "soon")],
            stderr: "gateway: --send-timeout: invalid value 'soon' (from HUBGATE_SEND_TIMEOUT)",
        },
        Case {
            args: &["--config", wrong_type.to_str().unwrap()],
            env: &[],
            stderr: "gateway: --max-post-body: invalid value 'big' (from key 'max-post-body'",
        },
        Case { args: &["--backplane", "redis", "--redis-url", "http://x"], env: &[], stderr: "gateway: --redis-url: " },
        Case {
            args: &["--client-timeout", "1s"],
            env: &[],
            stderr: "gateway: --client-timeout: must be longer than --keep-alive-interval",
        },
    ];
    for Case { args, env, stderr: expected } in cases {
        let port = testkit::free_port();
        let listen = format!("127.0.0.1:{port}");
        let args: Vec<&str> = ["--listen", &listen].into_iter().chain(args.iter().copied()).collect();
        let output = run(&args, env).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, not\n{stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
        assert!(!text(&output.stdout).contains("listening on"), "{args:?} started serving");
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was never taken");
    }
}

#[tokio::test]
async fn a_plain_listen_flag_still_runs_the_server() {
    // No subcommand means serve, as before `gateway config` existed: the listening line appears.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", "127.0.0.1:0", "--log", "error"])
        .env_clear()
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(DEADLINE, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    child.kill().await.unwrap();
}
