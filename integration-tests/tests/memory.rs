//! The conformance suite on the memory backend, through the facade's erased handle.

use fencelock_integration_tests::{conformance, run_main, MemoryHarness};

fn main() {
    let trials = conformance::trials(MemoryHarness::new());
    run_main(trials, || {});
}
