//! `#[conductor::main]`: dispatches worker processes before the user's `main`
//! runs, and drives an `async fn main` on a tokio runtime.

use crate::parse::MainArgs;
use crate::worker::item_head;
use proc_macro2::TokenStream;
use quote::quote;
use syn::{AttrStyle, Attribute, Error, Generics, Item, ItemFn, Result};

/// Expands `#[conductor::main(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse2::<MainArgs>(args);
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            let err = Error::new_spanned(
                item_head(&other),
                "#[conductor::main] goes on the program's `fn main` or `async fn main`",
            );
            let err = combine(args.err(), err).to_compile_error();
            return quote!(#item #err);
        }
        Err(err) => {
            let err = combine(args.err(), err).to_compile_error();
            return quote!(#item #err);
        }
    };

    match (args, check_signature(&func)) {
        (Ok(_), Ok(())) => expand_fn(func),
        // The function itself is fine, so expand it as usual: the only error
        // is then the one about the arguments.
        (Err(err), Ok(())) => {
            let err = err.to_compile_error();
            let expanded = expand_fn(func);
            quote!(#err #expanded)
        }
        (args, Err(err)) => {
            let err = combine(args.err(), err).to_compile_error();
            let fallback = fallback_fn(func);
            quote!(#err #fallback)
        }
    }
}

fn combine(first: Option<Error>, second: Error) -> Error {
    match first {
        Some(mut first) => {
            first.combine(second);
            first
        }
        None => second,
    }
}

fn check_signature(func: &ItemFn) -> Result<()> {
    let sig = &func.sig;
    func.modifiers.require_empty()?;
    if let Some(constness) = &sig.constness {
        return Err(Error::new(
            constness.span,
            "#[conductor::main] cannot be on a `const fn`; remove `const`",
        ));
    }
    if !sig.inputs.is_empty() || sig.variadic.is_some() {
        let inputs = &sig.inputs;
        let variadic = &sig.variadic;
        return Err(Error::new_spanned(
            quote!(#inputs #variadic),
            "the main function cannot take parameters; \
             read command-line arguments with `std::env::args()`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &sig.generics,
            "the main function cannot be generic",
        ));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        return Err(Error::new_spanned(
            where_clause,
            "the main function cannot have a `where` clause",
        ));
    }
    Ok(())
}

/// Splits outer (`#[..]`) from inner (`#![..]`) attributes: syn keeps both in
/// `ItemFn::attrs`, but inner ones must stay inside the body.
fn split_attrs(attrs: Vec<Attribute>) -> (Vec<Attribute>, Vec<Attribute>) {
    attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer))
}

fn expand_fn(func: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
        ..
    } = func;
    let (outer, inner) = split_attrs(attrs);
    let ident = &sig.ident;
    let output = &sig.output;
    let stmts = &block.stmts;

    // The user's `main`, unchanged but for its name, nested: its return type still
    // types its body (`?`, `Ok(())`), and a `return` returns from it.
    let (user_main, call) = match sig.asyncness.take() {
        Some(_) => (
            quote!(async fn __conductor_user_main() #output { #(#inner)* #(#stmts)* }),
            quote!(::conductor::__private::block_on_main(
                __conductor_user_main()
            )),
        ),
        None => (
            quote!(fn __conductor_user_main() #output { #(#inner)* #(#stmts)* }),
            quote!(__conductor_user_main()),
        ),
    };

    // Role dispatch comes first: in a worker process nothing of the user's
    // `main` (not even building a runtime) may run. The exit code is what the
    // user's `main` returned, or the worst of its runs when that was success.
    quote! {
        #(#outer)*
        #vis fn #ident() -> ::std::process::ExitCode {
            ::conductor::__private::dispatch_role();
            #user_main
            ::conductor::__private::exit_code_of(#call)
        }
    }
}

/// Used when the signature is wrong: the user's function survives, renamed
/// into a nested item, so its body is still type-checked (no knock-on "unused"
/// or "cannot find" errors), while the outer `fn` has the shape rustc expects
/// of `main` (so no knock-on E0580/E0752 either).
fn fallback_fn(func: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = func;
    let (outer, inner) = split_attrs(attrs);

    let mut outer_sig = sig.clone();
    outer_sig.constness = None;
    outer_sig.asyncness = None;
    outer_sig.inputs.clear();
    outer_sig.variadic = None;
    outer_sig.generics = Generics::default();

    quote! {
        #(#outer)*
        #vis #outer_sig {
            #(#inner)*
            #[allow(dead_code)]
            #sig #block
            ::core::unreachable!()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn run(args: TokenStream, item: TokenStream) -> syn::File {
        crate::test_util::parse_output(expand(args, item))
    }

    use crate::test_util::errors;

    fn the_fn(file: &syn::File) -> &ItemFn {
        let mut fns = file.items.iter().filter_map(|item| match item {
            Item::Fn(func) => Some(func),
            _ => None,
        });
        let func = fns.next().expect("a fn");
        assert!(fns.next().is_none(), "exactly one top-level fn");
        func
    }

    fn text(tokens: impl ToTokens) -> String {
        tokens.to_token_stream().to_string()
    }

    #[test]
    fn async_main() {
        let file = run(
            quote!(),
            quote! {
                /// Docs stay.
                #[allow(unused)]
                pub async fn main() -> anyhow::Result<()> {
                    #![allow(clippy::all)]
                    let x = work().await?;
                    Ok(())
                }
            },
        );
        assert!(errors(&file).is_empty());
        let func = the_fn(&file);
        assert!(func.sig.asyncness.is_none());
        assert_eq!(func.sig.ident, "main");
        assert!(func.sig.inputs.is_empty());
        assert_eq!(text(&func.sig.output), "-> :: std :: process :: ExitCode");
        assert_eq!(text(&func.vis), "pub");
        assert_eq!(func.attrs.len(), 2, "doc and allow");

        let stmts: Vec<String> = func.block.stmts.iter().map(text).collect();
        assert_eq!(
            stmts,
            [
                ":: conductor :: __private :: dispatch_role () ;",
                "async fn __conductor_user_main () -> anyhow :: Result < () > { # ! [allow (clippy :: all)] let x = work () . await ? ; Ok (()) }",
                ":: conductor :: __private :: exit_code_of (:: conductor :: __private :: block_on_main (__conductor_user_main ()))",
            ]
        );
    }

    #[test]
    fn sync_main() {
        let file = run(
            quote!(),
            quote!(
                fn main() {
                    run();
                }
            ),
        );
        assert!(errors(&file).is_empty());
        let func = the_fn(&file);
        let stmts: Vec<String> = func.block.stmts.iter().map(text).collect();
        assert_eq!(
            stmts,
            [
                ":: conductor :: __private :: dispatch_role () ;",
                "fn __conductor_user_main () { run () ; }",
                ":: conductor :: __private :: exit_code_of (__conductor_user_main ())",
            ]
        );
    }

    #[test]
    fn args_are_rejected_but_main_still_expands() {
        let file = run(
            quote!(flavor = "current_thread"),
            quote!(
                async fn main() {}
            ),
        );
        assert_eq!(
            errors(&file),
            ["#[conductor::main] takes no arguments: write #[conductor::main]"]
        );
        let func = the_fn(&file);
        assert!(func.sig.asyncness.is_none());
        assert!(text(&func.block).contains("dispatch_role"));
    }

    #[test]
    fn params_are_rejected_and_body_kept_in_a_nested_fn() {
        let file = run(
            quote!(),
            quote!(
                async fn main(args: Vec<String>) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        let errors = errors(&file);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("cannot take parameters"), "{errors:?}");
        let func = the_fn(&file);
        assert!(func.sig.asyncness.is_none());
        assert!(func.sig.inputs.is_empty());
        assert_eq!(text(&func.sig.output), "-> Result < () , E >");
        let Some(syn::Stmt::Item(Item::Fn(nested))) = func.block.stmts.first() else {
            panic!("nested fn first")
        };
        assert!(nested.sig.asyncness.is_some());
        assert_eq!(nested.sig.inputs.len(), 1);
    }

    #[test]
    fn signature_errors() {
        let cases = [
            (
                quote!(
                    fn main<T>() {}
                ),
                "cannot be generic",
            ),
            (
                quote!(
                    fn main()
                    where
                        u8: Copy,
                    {
                    }
                ),
                "`where` clause",
            ),
            (
                quote!(
                    fn main(&self) {}
                ),
                "cannot take parameters",
            ),
            (
                quote!(
                    const fn main() {}
                ),
                "`const fn`",
            ),
        ];
        for (item, expected) in cases {
            let file = run(quote!(), item);
            let errors = errors(&file);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains(expected),
                "expected {expected:?} in {errors:?}"
            );
            let func = the_fn(&file);
            assert!(func.sig.generics.params.is_empty() && func.sig.inputs.is_empty());
        }
    }

    #[test]
    fn both_args_and_signature_errors_are_reported() {
        let file = run(
            quote!(threads = 4),
            quote!(
                fn main(x: u8) {}
            ),
        );
        assert_eq!(errors(&file).len(), 2);
    }

    #[test]
    fn not_a_fn() {
        let file = run(
            quote!(),
            quote!(
                struct Main;
            ),
        );
        let errors = errors(&file);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("goes on the program's `fn main`"),
            "{errors:?}"
        );
        assert!(matches!(file.items[0], Item::Struct(_)));
    }
}
