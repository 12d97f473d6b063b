//! Home of conductor's examples and integration tests.
