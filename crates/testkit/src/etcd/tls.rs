//! Certificates for an [`Etcd`](super::Etcd) that serves TLS and requires client
//! certificates, made with the `openssl` CLI in the fixture's directory: a CA, etcd's server
//! certificate for its address, a client certificate; and on request another CA with a
//! client certificate of its own, which etcd does not trust (for negative tests).
//!
//! Keys are ECDSA P-256 (fast to make; rustls and Go both take them), PKCS#8 PEM. Every
//! certificate is X.509 v3 with the extensions strict verifiers want: the CA is
//! `CA:TRUE` with `keyCertSign`; leaves are `CA:FALSE`, the server's names its address as an
//! IP subject alternative name (rustls ignores the common name) and has `serverAuth` and
//! `clientAuth` (etcd 3.4's gateway dials etcd itself with the server certificate), the
//! client's has `clientAuth`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{default_timeout, lossy, run_with_timeout, show_argv};

/// How long the certificates are valid (days): longer than any test.
const DAYS: &str = "2";

/// What a client of etcd is given for mutual TLS: the CA it verifies etcd's certificate
/// with, and its own certificate and key. Paths are on the host's `/tmp`, which fake hosts
/// (and so their daemons) see at the same paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdCerts {
    /// The CA certificate (PEM) the client trusts for etcd's certificate.
    pub ca: PathBuf,
    /// The client's certificate (PEM).
    pub cert: PathBuf,
    /// The client's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl EtcdCerts {
    /// Cove's (and Docker's) `--cluster-store-opt` values for these files:
    /// `kv.cacertfile=<ca>`, `kv.certfile=<cert>`, `kv.keyfile=<key>`.
    pub fn store_opts(&self) -> [String; 3] {
        [
            format!("kv.cacertfile={}", self.ca.display()),
            format!("kv.certfile={}", self.cert.display()),
            format!("kv.keyfile={}", self.key.display()),
        ]
    }

    /// The daemon flags for [`EtcdCerts::store_opts`]: each preceded by
    /// `--cluster-store-opt`.
    pub fn store_flags(&self) -> Vec<String> {
        self.store_opts().into_iter().flat_map(|o| ["--cluster-store-opt".to_string(), o]).collect()
    }

    /// etcdctl's flags for these files: `--cacert=<ca>`, `--cert=<cert>`, `--key=<key>`.
    pub fn etcdctl_flags(&self) -> Vec<String> {
        [("--cacert", &self.ca), ("--cert", &self.cert), ("--key", &self.key)]
            .into_iter()
            .map(|(flag, p)| format!("{flag}={}", p.display()))
            .collect()
    }
}

/// The CA etcd trusts, etcd's server certificate, and a client certificate.
#[derive(Debug)]
pub(crate) struct Pki {
    dir: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The trusted client's files (`ca` is the CA that signed everything here).
    pub client: EtcdCerts,
}

impl Pki {
    /// Make the CA, a server certificate for `ip` and a client certificate in `dir` (made
    /// here; it must not exist).
    pub(crate) fn make(dir: &Path, ip: IpAddr) -> Result<Pki, String> {
        fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        write_config(dir, Some(ip))?;
        let (ca, ca_key) = make_ca(dir, "cove-test-ca")?;
        let (server_cert, server_key) = make_leaf(dir, "server", "etcd", &ca, &ca_key)?;
        let (cert, key) = make_leaf(dir, "client", "cove-client", &ca, &ca_key)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            server_cert,
            server_key,
            client: EtcdCerts { ca, cert, key },
        })
    }

    /// Another CA, which etcd does not trust and which did not sign etcd's certificate, and
    /// a client certificate it signed, in `<dir>/<name>/`: as a client's `EtcdCerts`, it
    /// is refused by etcd (its client certificate) and refuses etcd (its CA).
    pub(crate) fn other_ca(&self, name: &str) -> Result<EtcdCerts, String> {
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!("CA name {name:?}: use [A-Za-z0-9-]"));
        }
        let dir = self.dir.join(name);
        fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        write_config(&dir, None)?;
        let (ca, ca_key) = make_ca(&dir, &format!("{name}-ca"))?;
        let (cert, key) = make_leaf(&dir, "client", &format!("{name}-client"), &ca, &ca_key)?;
        Ok(EtcdCerts { ca, cert, key })
    }
}

/// `openssl.cnf` of `dir`: the extensions of each kind of certificate; the server's names
/// `ip`.
fn write_config(dir: &Path, ip: Option<IpAddr>) -> Result<(), String> {
    let mut cnf = String::from(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n\
         [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [client]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n",
    );
    if let Some(ip) = ip {
        cnf.push_str(&format!(
            "[server]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = IP:{ip}\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        ));
    }
    let path = dir.join("openssl.cnf");
    fs::write(&path, cnf).map_err(|e| format!("{}: {e}", path.display()))
}

/// A self-signed CA `<dir>/ca.pem` (key `ca-key.pem`) with common name `cn`.
fn make_ca(dir: &Path, cn: &str) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    openssl(dir, &[], "ca", cn, &cert, &key)?;
    Ok((cert, key))
}

/// `<dir>/<kind>.pem` (key `<kind>-key.pem`) with the extensions of section `kind`, signed
/// by the CA `ca`.
fn make_leaf(
    dir: &Path,
    kind: &str,
    cn: &str,
    ca: &Path,
    ca_key: &Path,
) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join(format!("{kind}.pem")), dir.join(format!("{kind}-key.pem")));
    let (ca, ca_key) = (path_str(ca)?, path_str(ca_key)?);
    openssl(dir, &["-CA", ca, "-CAkey", ca_key], kind, cn, &cert, &key)?;
    Ok((cert, key))
}

/// One `openssl req -x509` that makes a new P-256 key and a certificate with the
/// extensions of section `ext` of `<dir>/openssl.cnf`, signed by `signer` (`-CA ...`) or
/// self-signed.
fn openssl(
    dir: &Path,
    signer: &[&str],
    ext: &str,
    cn: &str,
    cert: &Path,
    key: &Path,
) -> Result<(), String> {
    let cnf = dir.join("openssl.cnf");
    let subj = format!("/CN={cn}");
    let mut argv = vec!["openssl", "req", "-x509", "-new", "-newkey", "ec"];
    argv.extend(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc", "-days", DAYS]);
    argv.extend(["-subj", &subj, "-config", path_str(&cnf)?, "-extensions", ext]);
    argv.extend(["-keyout", path_str(key)?, "-out", path_str(cert)?]);
    argv.extend_from_slice(signer);
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let shown = show_argv(&argv);
    let out = run_with_timeout(cmd, None, default_timeout(), &shown);
    if !out.status.success() {
        return Err(format!("{shown} failed ({}): {}", out.status, lossy(&out.stderr).trim()));
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str().ok_or_else(|| format!("{} is not UTF-8", p.display()))
}
