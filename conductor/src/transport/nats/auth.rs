//! Proving ourselves to a secured NATS server, and trusting it: [`NatsAuth`] (and
//! credentials in the URL) turned into the client's connect options. Secrets never
//! appear in a message: URLs are shown with their credentials masked.

use crate::settings::NatsAuth;

/// The server address with its credentials taken out, and `auth` with those
/// credentials added where it had none: `nats://user:pass@host` gives a user and
/// password, `nats://token@host` a token. Several addresses may be given, separated
/// by commas.
pub(crate) fn split_url(url: &str, auth: &NatsAuth) -> (String, NatsAuth) {
    let mut auth = auth.clone();
    let mut addresses = Vec::new();
    for address in url.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let (scheme, rest) = match address.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, address),
        };
        let host = match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let has_credentials = auth.user.is_some()
                    || auth.token.is_some()
                    || auth.nkey_seed.is_some()
                    || auth.credentials_file.is_some();
                if !has_credentials && !userinfo.is_empty() {
                    match userinfo.split_once(':') {
                        Some((user, password)) => {
                            auth.user = Some((user.to_string(), password.to_string()))
                        }
                        None => auth.token = Some(userinfo.to_string()),
                    }
                }
                host
            }
            None => rest,
        };
        if scheme == Some("tls") {
            auth.require_tls = true;
        }
        addresses.push(match scheme {
            Some(scheme) => format!("{scheme}://{host}"),
            None => host.to_string(),
        });
    }
    (addresses.join(","), auth)
}

/// `url` as it may be shown: credentials in it masked.
pub(crate) fn redact(url: &str) -> String {
    url.split(',')
        .map(|address| {
            let (prefix, rest) = match address.split_once("://") {
                Some((scheme, rest)) => (format!("{scheme}://"), rest),
                None => (String::new(), address),
            };
            match rest.rsplit_once('@') {
                Some((_, host)) => format!("{prefix}***@{host}"),
                None => address.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The connect options `auth` asks for, on top of `options`.
pub(super) async fn apply(
    mut options: async_nats::ConnectOptions,
    auth: &NatsAuth,
) -> Result<async_nats::ConnectOptions, String> {
    if let Some(path) = &auth.credentials_file {
        options = options.credentials_file(path).await.map_err(|e| {
            format!(
                "cannot read the NATS credentials file {}: {e}",
                path.display()
            )
        })?;
    }
    if let Some(seed) = &auth.nkey_seed {
        // Checked here: a bad seed would otherwise fail deep in the handshake.
        nkeys::KeyPair::from_seed(seed)
            .map_err(|_| "the NATS NKey seed is not a valid seed".to_string())?;
        options = options.nkey(seed.clone());
    }
    if let Some((user, password)) = &auth.user {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &auth.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &auth.ca_file {
        readable(path, "CA certificate")?;
        options = options.add_root_certificates(path.clone());
    }
    if let Some((cert, key)) = &auth.client_cert {
        readable(cert, "client certificate")?;
        readable(key, "client key")?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.require_tls(auth.require_tls))
}

fn readable(path: &std::path::Path, what: &str) -> Result<(), String> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| format!("cannot read the NATS {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_taken_out_and_masked() {
        let (url, auth) = split_url("nats://alice:s3cret@127.0.0.1:4222", &NatsAuth::new());
        assert_eq!(url, "nats://127.0.0.1:4222");
        assert_eq!(auth.user, Some(("alice".into(), "s3cret".into())));
        let (url, auth) = split_url("tls://TOKEN@a:1, tls://TOKEN@b:2", &NatsAuth::new());
        assert_eq!(url, "tls://a:1,tls://b:2");
        assert_eq!(auth.token.as_deref(), Some("TOKEN"));
        assert!(auth.require_tls);
        let (_, auth) = split_url("nats://x:y@h:1", &NatsAuth::new().token("set"));
        assert!(auth.user.is_none(), "what the code set wins");
        assert_eq!(
            redact("nats://alice:s3cret@h:1,nats://h2:2"),
            "nats://***@h:1,nats://h2:2"
        );
        assert!(!format!("{:?}", NatsAuth::new().user_password("u", "pw")).contains("pw"));
    }
}
