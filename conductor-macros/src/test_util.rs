//! Helpers shared by the macros' unit tests.

use proc_macro2::TokenStream;
use syn::{Item, LitStr};

/// Parses a macro's output, which must always be valid Rust, even on bad input.
pub(crate) fn parse_output(output: TokenStream) -> syn::File {
    match syn::parse2::<syn::File>(output.clone()) {
        Ok(file) => file,
        Err(err) => panic!("output does not parse ({err}):\n{output}"),
    }
}

/// The messages of all `compile_error!` invocations in the output.
pub(crate) fn errors(file: &syn::File) -> Vec<String> {
    file.items
        .iter()
        .filter_map(|item| match item {
            Item::Macro(m) if m.mac.path.segments.last()?.ident == "compile_error" => {
                Some(m.mac.parse_body::<LitStr>().expect("message").value())
            }
            _ => None,
        })
        .collect()
}
