//! The flags of `loadtest run`. Every flag is optional: given, it overrides the scenario
//! file; without a file, the flags are the whole plan.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `loadtest run [FILE] [flags]`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML, k6 vocabulary); flags override its values.
    pub file: Option<PathBuf>,
    /// Built-in scenario: echo, broadcast, group, user, connection, churn.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Hub URL (repeatable): VUs connect round robin over them.
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// Hub URL for the subscribers of fan-out scenarios (repeatable); default the --url list.
    #[arg(long = "subscriber-url")]
    pub subscriber_urls: Vec<String>,
    /// ws, sse or lp.
    #[arg(long)]
    pub transport: Option<String>,
    /// json or messagepack.
    #[arg(long)]
    pub protocol: Option<String>,
    /// The same bearer token on every connection.
    #[arg(long, conflicts_with = "jwt_secret")]
    pub access_token: Option<String>,
    /// Sign an HS256 token per connection with this secret (`sub` = `user-N`, N the VU number).
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// constant-vus: VUs (with --duration).
    #[arg(long)]
    pub vus: Option<u32>,
    /// Length of a constant executor (e.g. 30s, 2m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// constant-arrival-rate: iterations per --time-unit; with --stages, the start rate of a
    /// ramping-arrival-rate.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The arrival rate's unit (default 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub time_unit: Option<Duration>,
    /// VUs prepared before an arrival-rate run.
    #[arg(long)]
    pub pre_allocated_vus: Option<u32>,
    /// Most VUs an arrival-rate run may prepare.
    #[arg(long)]
    pub max_vus: Option<u32>,
    /// Ramping stages `DURATION:TARGET,...` (e.g. 30s:100,1m:100): ramping-vus, or
    /// ramping-arrival-rate with --rate, --time-unit or --pre-allocated-vus.
    #[arg(long)]
    pub stages: Option<String>,
    /// `metric=expression` (repeatable), added to the file's; a trailing `!` or `:abort`
    /// makes it abortOnFail. E.g. `delivery_latency=p(95)<200!`.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// `key=value` (repeatable): a tag on every exported metric.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Write the summary as JSON (k6's --summary-export layout) to this file.
    #[arg(long)]
    pub summary_export: Option<PathBuf>,
    /// Write an HTML report to this file: plots over time (connections, deliveries/s, delivery
    /// latency percentiles, errors/s), the thresholds with their verdicts and the summary, all
    /// inline (opens without a network).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Serve the live metrics at http://ADDR/metrics (Prometheus text format).
    #[arg(long)]
    pub prometheus: Option<SocketAddr>,
    /// Bytes of each message's payload (at least 32, the stamp).
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// Subscriber connections of the fan-out scenarios (default 10).
    #[arg(long)]
    pub subscribers: Option<u32>,
    /// Members per group in the group scenario (default 10).
    #[arg(long)]
    pub group_size: Option<u32>,
    /// Share (0 to 1) of each group's members that leave and rejoin every second (group
    /// scenario); they are left out of the delivery accounting.
    #[arg(long)]
    pub group_churn: Option<f64>,
    /// How long the end of a fan-out run waits for deliveries in flight (default 3s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drain: Option<Duration>,
    /// Step-up mode: constant-arrival-rate steps at these rates per second (e.g.
    /// 100,200,400), stopping at the first step that fails.
    #[arg(long)]
    pub step_up: Option<String>,
    /// Dedicated publishers of the fan-out scenarios under an arrival rate: connections that
    /// each publish their share of the rate from a task of their own, never waiting for a
    /// free VU (default 2 in step-up mode, else 0: publishing VUs as in k6).
    #[arg(long)]
    pub publishers: Option<u32>,
    /// Length of each step-up step (default 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub step_duration: Option<Duration>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// Worker processes on this machine sharing the VUs, arrival rates and subscribers
    /// (merged live into one summary). The binary's default: one per core, more if the
    /// connections need them to stay under the per-process open-file limit; 1 runs in this
    /// process.
    #[arg(long)]
    pub workers: Option<u32>,
    /// A `loadtest agent` (HOST:PORT, repeatable) to run one worker each, instead of local
    /// workers; the scenario goes to every agent and their metrics are merged.
    #[arg(long = "agent", conflicts_with = "workers")]
    pub agents: Vec<String>,
    /// The agents' shared token.
    #[arg(long, env = "LOADTEST_AGENT_TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
}

impl RunArgs {
    /// Parses the flags as `loadtest run` would (without the program and subcommand names):
    /// what tests and embedders call instead of building the struct by hand.
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Run {
            #[command(flatten)]
            args: RunArgs,
        }
        let argv = std::iter::once(std::ffi::OsString::from("run")).chain(flags.into_iter().map(Into::into));
        Ok(Run::try_parse_from(argv)?.args)
    }
}
