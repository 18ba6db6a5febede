//! The backplane envelope decoder (what a node reads from Redis, which any process with access
//! to Redis can write): arbitrary bytes never panic, and an envelope that decodes survives
//! encode → decode unchanged, with a stable encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(Err(why)) = gateway::fuzzing::envelope_round_trip(data) {
        panic!("{why}");
    }
});
