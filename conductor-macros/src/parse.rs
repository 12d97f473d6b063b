//! Argument parsing for `#[conductor::worker(...)]` and `#[conductor::main]`.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Ident, LitStr, Path, Result, Token};

/// Listed in every key error so the user sees the whole vocabulary at once.
const WORKER_KEYS: &str = "valid keys: `type`, `init`";

/// The form every worker argument error points back to.
const WORKER_FORM: &str = "#[conductor::worker(type = \"my_worker\")]";

/// The arguments of `#[conductor::worker(type = "name")]`.
pub(crate) struct WorkerArgs {
    /// Kept as the literal, not a `String`, so later diagnostics (and the
    /// duplicate-registration guard) can point at the user's text. `None`: the
    /// worker is named after its function or type.
    pub(crate) type_name: Option<LitStr>,
    /// `init = path`: a function run once per worker process before its first job.
    pub(crate) init: Option<Path>,
}

impl Parse for WorkerArgs {
    fn parse(input: ParseStream) -> Result<Self> {
        let mut type_name: Option<LitStr> = None;
        let mut init: Option<Path> = None;

        while !input.is_empty() {
            // `type` is a Rust keyword, so it cannot be a `custom_keyword!`;
            // syn already has a token type for it.
            if input.peek(Token![type]) {
                let key: Token![type] = input.parse()?;
                let value = parse_type_value(input, key.span)?;
                if type_name.is_some() {
                    return Err(Error::new(
                        key.span,
                        format!("duplicate key `type`; {WORKER_KEYS}"),
                    ));
                }
                type_name = Some(value);
            } else if input.peek(Ident) && input.fork().parse::<Ident>()? == "init" {
                let key: Ident = input.parse()?;
                if init.is_some() {
                    return Err(Error::new(
                        key.span(),
                        format!("duplicate key `init`; {WORKER_KEYS}"),
                    ));
                }
                if !input.peek(Token![=]) {
                    return Err(Error::new(
                        key.span(),
                        "expected `= path::to::function` after `init`",
                    ));
                }
                input.parse::<Token![=]>()?;
                init = Some(input.parse::<Path>().map_err(|e| {
                    Error::new(
                        e.span(),
                        "`init` must name a function: `init = my_setup` where \
                         `fn my_setup(worker: &conductor::Worker) -> Result<(), E>`",
                    )
                })?);
            } else if input.peek(Ident::peek_any) {
                // `parse_any` so that keys which happen to be keywords (`fn`,
                // `struct`, ...) get the same helpful message.
                let key = input.call(Ident::parse_any)?;
                return Err(Error::new(
                    key.span(),
                    format!("unknown key `{key}`; {WORKER_KEYS}"),
                ));
            } else {
                return Err(input.error(format!("expected `type = \"...\"`: write {WORKER_FORM}")));
            }

            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error(format!(
                    "expected `,` between arguments: write {WORKER_FORM}"
                )));
            }
            input.parse::<Token![,]>()?;
        }

        Ok(WorkerArgs { type_name, init })
    }
}

/// Parses `= "name"` after the `type` key and validates the name.
fn parse_type_value(input: ParseStream, key: Span) -> Result<LitStr> {
    // At the end of the input syn's own errors would point at the whole
    // attribute and prepend "unexpected end of input"; the key is more precise.
    let here = |message: String| {
        if input.is_empty() {
            Error::new(key, message)
        } else {
            input.error(message)
        }
    };

    if !input.peek(Token![=]) {
        return Err(here(format!(
            "expected `=` after `type`: write {WORKER_FORM}"
        )));
    }
    input.parse::<Token![=]>()?;

    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        validate_type_name(&lit)?;
        return Ok(lit);
    }
    if input.is_empty() || input.peek(Token![,]) {
        return Err(here(format!(
            "missing value for `type`: write {WORKER_FORM}"
        )));
    }
    // Point at the offending value itself (`type = my_worker`, `type = 3`, ...).
    let value: TokenTree = input.parse()?;
    Err(Error::new_spanned(
        value,
        format!("`type` must be a string literal: write {WORKER_FORM}"),
    ))
}

/// Worker type names travel between processes (command lines, environment,
/// logs), so they are restricted to a conservative, shell-safe alphabet.
fn validate_type_name(lit: &LitStr) -> Result<()> {
    if !lit.suffix().is_empty() {
        return Err(Error::new(
            lit.span(),
            format!(
                "unexpected suffix `{}` on the worker type name",
                lit.suffix()
            ),
        ));
    }
    let name = lit.value();
    if name.is_empty() {
        return Err(Error::new(
            lit.span(),
            format!("the worker type name must not be empty: write {WORKER_FORM}"),
        ));
    }
    if let Some(bad) = name.chars().find(|&c| !is_type_name_char(c)) {
        return Err(Error::new(
            lit.span(),
            format!(
                "invalid character {bad:?} in worker type name {name:?}; \
                 allowed are ASCII letters, digits, `_`, `-`, `.` and `:`"
            ),
        ));
    }
    Ok(())
}

fn is_type_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

/// The (absent) arguments of `#[conductor::main]`.
pub(crate) struct MainArgs;

impl Parse for MainArgs {
    fn parse(input: ParseStream) -> Result<Self> {
        if input.is_empty() {
            return Ok(MainArgs);
        }
        let args: TokenStream = input.parse()?;
        Err(Error::new_spanned(
            args,
            "#[conductor::main] takes no arguments: write #[conductor::main]",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn worker_args(tokens: TokenStream) -> Result<WorkerArgs> {
        syn::parse2::<WorkerArgs>(tokens)
    }

    fn worker_err(tokens: TokenStream) -> String {
        match worker_args(tokens) {
            Ok(args) => panic!(
                "expected an error, parsed {:?}",
                args.type_name
                    .as_ref()
                    .map(LitStr::value)
                    .unwrap_or_default()
            ),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn parses_type() {
        let args = worker_args(quote!(type = "square")).expect("valid");
        assert_eq!(
            args.type_name
                .as_ref()
                .map(LitStr::value)
                .unwrap_or_default(),
            "square"
        );
    }

    #[test]
    fn accepts_trailing_comma_and_full_alphabet() {
        let args = worker_args(quote!(type = "ns::Img-2.resize_v1",)).expect("valid");
        assert_eq!(
            args.type_name
                .as_ref()
                .map(LitStr::value)
                .unwrap_or_default(),
            "ns::Img-2.resize_v1"
        );
    }

    #[test]
    fn accepts_raw_string() {
        let args = worker_args(quote!(type = r"raw")).expect("valid");
        assert_eq!(
            args.type_name
                .as_ref()
                .map(LitStr::value)
                .unwrap_or_default(),
            "raw"
        );
    }

    #[test]
    fn the_type_may_be_left_out() {
        let args = worker_args(quote!()).unwrap();
        assert!(args.type_name.is_none());
    }

    #[test]
    fn unknown_key_lists_valid_keys() {
        let err = worker_err(quote!(name = "x"));
        assert!(err.contains("unknown key `name`"), "{err}");
        assert!(err.contains("valid keys: `type`"), "{err}");
    }

    #[test]
    fn unknown_key_after_type() {
        let err = worker_err(quote!(type = "x", retries = 3));
        assert!(err.contains("unknown key `retries`"), "{err}");
    }

    #[test]
    fn keyword_as_unknown_key() {
        let err = worker_err(quote!(fn = "x"));
        assert!(err.contains("unknown key `fn`"), "{err}");
    }

    #[test]
    fn duplicate_key() {
        let err = worker_err(quote!(type = "a", type = "b"));
        assert!(err.contains("duplicate key `type`"), "{err}");
        assert!(err.contains("valid keys: `type`"), "{err}");
    }

    #[test]
    fn bare_literal() {
        let err = worker_err(quote!("square"));
        assert!(err.contains("expected `type = \"...\"`"), "{err}");
    }

    #[test]
    fn missing_eq() {
        let err = worker_err(quote!(type("x")));
        assert!(err.contains("expected `=` after `type`"), "{err}");
    }

    #[test]
    fn key_alone_points_at_the_key() {
        let err = worker_err(quote!(type));
        assert!(err.contains("expected `=` after `type`"), "{err}");
        assert!(!err.contains("unexpected end of input"), "{err}");
    }

    #[test]
    fn missing_value() {
        let err = worker_err(quote!(type =));
        assert!(err.contains("missing value for `type`"), "{err}");
        let err = worker_err(quote!(type = , ));
        assert!(err.contains("missing value for `type`"), "{err}");
    }

    #[test]
    fn non_string_values() {
        for tokens in [quote!(type = square), quote!(type = 3), quote!(type = b"x")] {
            let err = worker_err(tokens);
            assert!(err.contains("`type` must be a string literal"), "{err}");
            assert!(err.contains(r#"type = "my_worker""#), "{err}");
        }
    }

    #[test]
    fn missing_comma() {
        let err = worker_err(quote!(type = "a" type = "b"));
        assert!(err.contains("expected `,`"), "{err}");
    }

    #[test]
    fn empty_name() {
        let err = worker_err(quote!(type = ""));
        assert!(err.contains("must not be empty"), "{err}");
    }

    #[test]
    fn bad_characters() {
        let err = worker_err(quote!(type = "my worker"));
        assert!(err.contains("invalid character ' '"), "{err}");
        let err = worker_err(quote!(type = "a/b"));
        assert!(err.contains("invalid character '/'"), "{err}");
        let err = worker_err(quote!(type = "größe"));
        assert!(err.contains("invalid character 'ö'"), "{err}");
    }

    #[test]
    fn suffix_rejected() {
        let lit: TokenStream = "type = \"x\"suffix".parse().expect("lexes");
        let err = worker_err(lit);
        assert!(err.contains("unexpected suffix `suffix`"), "{err}");
    }

    #[test]
    fn main_args() {
        assert!(syn::parse2::<MainArgs>(quote!()).is_ok());
        let err = match syn::parse2::<MainArgs>(quote!(flavor = "current_thread")) {
            Ok(_) => panic!("arguments must be rejected"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("#[conductor::main] takes no arguments"),
            "{err}"
        );
    }
}
