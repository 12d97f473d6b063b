//! Wrong uses of the macros are compile errors with spanned, explained messages.

#[test]
fn macro_misuse_fails_to_compile_with_clear_messages() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/worker_*.rs");
    cases.compile_fail("tests/ui/main_*.rs");
    cases.pass("tests/ui/pass_*.rs");
}
