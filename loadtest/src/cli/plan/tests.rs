use super::*;

fn args(flags: &[&str]) -> RunArgs {
    RunArgs::from_flags(flags).unwrap()
}

const FILE: &str = r#"
    [scenario]
    name = "broadcast"
    targets = ["http://a/hubs/chat", "http://b/hubs/chat"]
    subscribers = 50
    payload_bytes = 256

    [executor]
    executor = "constant-vus"
    vus = 5
    duration = "1m"

    [thresholds]
    deliveries_lost = ["count==0"]

    [tags]
    env = "staging"
"#;

fn file() -> Option<ScenarioFile> {
    Some(FILE.parse().unwrap())
}

#[test]
fn the_file_alone_is_the_plan() {
    let resolved = resolve(file(), &args(&[])).unwrap();
    assert_eq!(resolved.scenario, ScenarioName::Broadcast);
    assert_eq!(resolved.settings.targets.len(), 2);
    assert_eq!((resolved.settings.subscribers, resolved.settings.payload_bytes), (50, 256));
    assert_eq!(resolved.plan.executor, Executor::ConstantVus { vus: 5, duration: Duration::from_secs(60) });
    assert_eq!(resolved.tags["env"], "staging");
}

#[test]
fn flags_override_the_file_and_thresholds_add_to_it() {
    let resolved = resolve(
        file(),
        &args(&[
            "--scenario",
            "echo",
            "--url",
            "http://c/hubs/chat",
            "--subscribers",
            "7",
            "--threshold",
            "deliveries_lost=count<5!",
            "--tag",
            "env=prod",
        ]),
    )
    .unwrap();
    assert_eq!(resolved.scenario, ScenarioName::Echo);
    assert_eq!(resolved.settings.targets, ["http://c/hubs/chat"]);
    assert_eq!((resolved.settings.subscribers, resolved.settings.payload_bytes), (7, 256));
    let lost = &resolved.plan.thresholds["deliveries_lost"];
    assert_eq!(
        lost.iter().map(|t| (t.source.as_str(), t.abort_on_fail)).collect::<Vec<_>>(),
        [("count==0", false), ("count<5", true)]
    );
    assert_eq!(resolved.tags["env"], "prod");
}

#[test]
fn executor_flags_replace_the_files_executor_whole() {
    let rate = resolve(file(), &args(&["--rate", "200", "--duration", "30s", "--max-vus", "40"])).unwrap();
    assert_eq!(
        rate.plan.executor,
        Executor::ConstantArrivalRate {
            rate: 200.0,
            time_unit: Duration::from_secs(1),
            duration: Duration::from_secs(30),
            pre_allocated_vus: 10,
            max_vus: Some(40),
        }
    );
    let ramp = resolve(file(), &args(&["--stages", "30s:100,1m:100"])).unwrap();
    let stages = parse_stages("30s:100,1m:100").unwrap();
    assert_eq!(ramp.plan.executor, Executor::RampingVus { start_vus: 0, stages: stages.clone() });
    let arrival = resolve(file(), &args(&["--stages", "30s:100,1m:100", "--rate", "10"])).unwrap();
    assert!(matches!(arrival.plan.executor, Executor::RampingArrivalRate { start_rate: 10.0, .. }));
}

#[test]
fn without_a_file_the_flags_are_the_whole_plan() {
    let resolved = resolve(None, &args(&["--scenario", "churn", "--url", "http://a/h", "--vus", "3"])).unwrap();
    assert_eq!(resolved.plan.executor, Executor::ConstantVus { vus: 3, duration: Duration::from_secs(10) });
    assert!(matches!(resolve(None, &args(&["--url", "http://a/h"])), Err(PlanError::NoScenario)));
    assert!(matches!(resolve(None, &args(&["--scenario", "echo"])), Err(PlanError::NoTarget)));
}

#[test]
fn mistakes_in_flags_are_named() {
    let base = ["--scenario", "echo", "--url", "http://a/h"];
    let with = |extra: &[&str]| {
        let mut flags = base.to_vec();
        flags.extend_from_slice(extra);
        resolve(None, &args(&flags)).unwrap_err().to_string()
    };
    assert!(with(&["--transport", "carrier-pigeon"]).contains("unknown transport"));
    assert!(with(&["--threshold", "p(95)<200"]).starts_with("--threshold"));
    assert!(with(&["--stages", "30s"]).starts_with("--stages"));
    assert!(with(&["--transport", "sse", "--protocol", "messagepack"]).contains("SSE"));
    assert!(with(&["--step-up", "100,-1"]).starts_with("--step-up"));
    assert!(resolve(None, &args(&["--scenario", "nope", "--url", "http://a/h"])).is_err());
}

#[test]
fn a_threshold_flag_marks_abort_with_a_bang_or_a_suffix() {
    for (text, abort) in [("m=p(95)<200", false), ("m=p(95)<200!", true), ("m=p(95)<200:abort", true)] {
        let (metric, threshold) = threshold_flag(text).unwrap();
        assert_eq!((metric.as_str(), threshold.source.as_str(), threshold.abort_on_fail), ("m", "p(95)<200", abort));
    }
}
