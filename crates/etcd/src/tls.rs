//! Mutual TLS to etcd: the files of Docker's `kv.*` options, checked when the store is made
//! (so a daemon given a bad file refuses to start, naming the option and the path), and
//! what a failed connection means ([`Diagnosis`]).
//!
//! Why a diagnosis: with TLS 1.3 a client finishes its handshake before etcd checks the
//! client's certificate, so a refused certificate reaches the gRPC client as whatever the
//! connection did next: "received fatal alert: BadCertificate" one time, "broken pipe" or
//! "connection closed" the next. When a call fails that way, [`Diagnosis::explain`] makes
//! one TLS 1.2 handshake of its own to the members, where etcd decides on the client's
//! certificate inside the handshake, and says what it found: etcd's certificate not signed
//! by `kv.cacertfile`, etcd refusing this host's certificate (or wanting one), etcd not
//! speaking TLS, or etcd speaking TLS to a client configured without it. The probe sends no
//! request.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

use crate::config::{ConfigError, Endpoint, TlsFiles, OPT_CACERT, OPT_CERT, OPT_KEY};

/// How long one diagnostic handshake may take (milliseconds on a LAN; a loaded machine may
/// starve etcd for a while).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The crypto provider tonic itself connects with (ring's; rustls 0.23.48 deprecates it for
/// lacking post-quantum key exchange, which etcd 3.4's Go TLS has not either).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// `kv.cacertfile=/path`, as the option was given.
fn opt(name: &str, path: &std::path::Path) -> String {
    format!("{name}={}", path.display())
}

/// The client's TLS settings for etcd-client and for the diagnosis, from the files; fails
/// naming the option and the path when a file cannot be read, holds no certificate or key,
/// or the key is not the certificate's.
pub(crate) fn load(store: &str, tls: &TlsFiles) -> Result<(TlsOptions, ClientConfig), ConfigError> {
    let bad = |what: String| ConfigError(format!("cluster store {store}: {what}"));
    let read = |name: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| bad(format!("{}: cannot read it: {e}", opt(name, path))))
    };
    let certs = |name: &str, path: &std::path::Path, pem: &[u8]| {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("{}: not a PEM certificate file: {e}", opt(name, path))))?;
        if certs.is_empty() {
            return Err(bad(format!(
                "{}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)",
                opt(name, path)
            )));
        }
        Ok(certs)
    };
    let ca_pem = read(OPT_CACERT, &tls.ca)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs(OPT_CACERT, &tls.ca, &ca_pem)?);
    if added == 0 {
        return Err(bad(format!(
            "{}: none of its {ignored} certificate(s) is a usable CA certificate",
            opt(OPT_CACERT, &tls.ca)
        )));
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .map_err(|e| bad(format!("TLS 1.2: {e}")))?
        .with_root_certificates(roots);
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca_pem));
    let config = match &tls.identity {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let cert_pem = read(OPT_CERT, cert_path)?;
            let key_pem = read(OPT_KEY, key_path)?;
            let chain = certs(OPT_CERT, cert_path, &cert_pem)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                bad(format!(
                    "{}: no private key in it (expected PEM: PKCS#8, PKCS#1 or SEC1): {e}",
                    opt(OPT_KEY, key_path)
                ))
            })?;
            CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
                let why = match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "the key is not the certificate's".to_string()
                    }
                    other => other.to_string(),
                };
                bad(format!(
                    "{} and {} do not go together: {why}",
                    opt(OPT_CERT, cert_path),
                    opt(OPT_KEY, key_path)
                ))
            })?;
            options = options.identity(Identity::from_pem(cert_pem, key_pem));
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("{}: {e}", opt(OPT_CERT, cert_path))))?
        }
    };
    Ok((options, config))
}

/// What a failed connection to etcd means, found by a handshake of its own.
#[derive(Debug)]
pub(crate) struct Diagnosis {
    endpoints: Vec<Endpoint>,
    tls: Option<TlsFiles>,
    /// TLS 1.2 only, with the configured CA and client certificate; without TLS, one that
    /// accepts any server (it only asks whether etcd speaks TLS).
    config: Arc<ClientConfig>,
}

/// What one probe handshake found.
enum Found {
    /// The handshake worked, or the probe could not tell: nothing to add.
    Nothing,
    /// This host does not accept etcd's certificate.
    ServerRefused(CertificateError),
    /// etcd ended the handshake with an alert (it refused this host's certificate).
    ClientRefused(rustls::AlertDescription),
    /// etcd answered the handshake with something that is not TLS.
    NotTls(String),
    /// (No TLS configured.) etcd answered with a TLS handshake.
    SpeaksTls,
}

impl Diagnosis {
    /// For `endpoints`, with `tls` and its TLS 1.2 `config` (from [`load`]), or without TLS.
    pub(crate) fn new(
        endpoints: &[Endpoint],
        tls: Option<(&TlsFiles, ClientConfig)>,
    ) -> Result<Diagnosis, ConfigError> {
        let (files, config) = match tls {
            Some((files, config)) => (Some(files.clone()), config),
            None => {
                let provider = provider();
                let config = ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(&[&rustls::version::TLS12])
                    .map_err(|e| ConfigError(format!("TLS 1.2: {e}")))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
                    .with_no_client_auth();
                (None, config)
            }
        };
        Ok(Diagnosis { endpoints: endpoints.to_vec(), tls: files, config: Arc::new(config) })
    }

    /// Whether a failure with `cause` may be a TLS problem worth a probe: not a timeout,
    /// not a refused TCP connection.
    pub(crate) fn worth_probing(cause: &str) -> bool {
        let plain = ["no answer within", "Connection refused", "client thread", "client closed"];
        !plain.iter().any(|p| cause.contains(p))
    }

    /// `cause` with what a probe of the members found in front, when it found a TLS problem.
    pub(crate) async fn explain(&self, cause: String) -> String {
        for e in &self.endpoints {
            let found =
                tokio::time::timeout(PROBE_TIMEOUT, self.probe(e)).await.unwrap_or(Found::Nothing);
            if let Some(why) = self.describe(e, found) {
                return format!("{why}; the request failed with: {cause}");
            }
        }
        cause
    }

    async fn probe(&self, e: &Endpoint) -> Found {
        let Ok(tcp) = TcpStream::connect((e.host.as_str(), e.port)).await else {
            return Found::Nothing;
        };
        let Ok(name) = ServerName::try_from(e.host.clone()) else {
            return Found::Nothing;
        };
        match TlsConnector::from(self.config.clone()).connect(name, tcp).await {
            Ok(_) => {
                if self.tls.is_none() {
                    Found::SpeaksTls
                } else {
                    Found::Nothing
                }
            }
            Err(err) => {
                let inner = err.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                match (inner, self.tls.is_some()) {
                    (Some(rustls::Error::InvalidCertificate(c)), true) => {
                        Found::ServerRefused(c.clone())
                    }
                    (Some(rustls::Error::AlertReceived(a)), true) => Found::ClientRefused(*a),
                    // Without TLS configured, any TLS answer (an alert: etcd wants a client
                    // certificate) shows etcd speaks it.
                    (Some(rustls::Error::AlertReceived(_)), false) => Found::SpeaksTls,
                    (_, true) => Found::NotTls(err.to_string()),
                    (_, false) => Found::Nothing,
                }
            }
        }
    }

    fn describe(&self, e: &Endpoint, found: Found) -> Option<String> {
        let ca = self.tls.as_ref().map(|t| opt(OPT_CACERT, &t.ca)).unwrap_or_default();
        Some(match found {
            Found::Nothing => return None,
            Found::ServerRefused(CertificateError::UnknownIssuer) => format!(
                "TLS: etcd's certificate at {e} is not signed by the CA in {ca} (unknown issuer)"
            ),
            Found::ServerRefused(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "TLS: etcd's certificate at {e} does not name {}, the address in \
                 --cluster-store",
                e.host
            ),
            Found::ServerRefused(c) => {
                format!("TLS: this host does not accept etcd's certificate at {e} ({c:?}; {ca})")
            }
            Found::ClientRefused(alert) => {
                match self.tls.as_ref().and_then(|t| t.identity.as_ref()) {
                    None => format!(
                        "TLS: etcd at {e} refused the handshake (alert {alert:?}): it requires a \
                     client certificate and none is configured (--cluster-store-opt \
                     {OPT_CERT}=… {OPT_KEY}=…)"
                    ),
                    Some((cert, _)) => format!(
                        "TLS: etcd at {e} refused this host's client certificate {} (alert \
                     {alert:?}): it must be signed by a CA etcd trusts (etcd's \
                     --trusted-ca-file)",
                        opt(OPT_CERT, cert)
                    ),
                }
            }
            Found::NotTls(why) => format!(
                "TLS: etcd at {e} does not speak TLS ({why}); without TLS, give no \
                 --cluster-store-opt {OPT_CACERT}"
            ),
            Found::SpeaksTls => format!(
                "etcd at {e} serves TLS and no TLS is configured: give --cluster-store-opt \
                 {OPT_CACERT}=… (and {OPT_CERT}=…, {OPT_KEY}=… if etcd requires client \
                 certificates)"
            ),
        })
    }
}

/// A verifier that accepts any server: only for asking whether etcd speaks TLS, when this
/// host is configured without it. The probe sends nothing over the connection.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_refused_connections_are_not_probed() {
        for plain in [
            "no answer within 5s",
            "transport error: tcp connect error: Connection refused (os error 111)",
            "client thread is gone",
        ] {
            assert!(!Diagnosis::worth_probing(plain), "{plain}");
        }
        for maybe_tls in [
            "transport error: connection error: stream closed because of a broken pipe",
            "transport error: connection error: received fatal alert: BadCertificate",
            "operation was canceled: transport error: connection closed",
            "invalid peer certificate: UnknownIssuer: transport error",
            "tls handshake eof: transport error",
        ] {
            assert!(Diagnosis::worth_probing(maybe_tls), "{maybe_tls}");
        }
    }
}
