//! The TOML configuration file (gateway::config::load, `--config FILE`): arbitrary file
//! contents never panic and either load or give one error line. A file that loads prints an
//! effective configuration (`gateway config`) that, once its redacted secrets are filled in
//! again, loads and prints the same.
#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;

use gateway::config::{load, LoadError};
use libfuzzer_sys::fuzz_target;

fn file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hubgate-fuzz-config-{}-{name}.toml", std::process::id()))
}

fn load_file(path: &PathBuf, contents: &[u8]) -> Result<String, LoadError> {
    std::fs::write(path, contents).expect("the temporary directory is writable");
    let args = ["gateway".into(), "--config".into(), path.clone().into_os_string()];
    load(args, &HashMap::new()).map(|loaded| loaded.to_toml().to_owned())
}

fuzz_target!(|data: &[u8]| {
    let path = file("input");
    match load_file(&path, data) {
        Ok(printed) => {
            // Secrets print as "<redacted>", which loading refuses: put one in, as a user would.
            const REFILL: &str = "a-refilled-secret-of-length";
            let refilled = printed.replace("<redacted>", REFILL);
            let again = load_file(&file("printed"), refilled.as_bytes())
                .unwrap_or_else(|e| panic!("the printed configuration does not load: {e}\n{printed}"));
            assert_eq!(
                again.replace(REFILL, "<redacted>"),
                printed,
                "the printed configuration changed when loaded again"
            );
        }
        Err(LoadError::Display(_)) => panic!("a file made load print help or the version"),
        Err(error) => {
            let text = error.to_string();
            assert!(!text.is_empty(), "an empty error");
        }
    }
});
