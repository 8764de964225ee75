//! The conformance suite on the embedded backend.

switchboard_store::store_conformance_tests!(switchboard_store::conformance::memory_fixture);
