//! What the TLS and credentials tests make for their private servers: a certificate
//! authority and a server certificate signed by it (and a second authority nobody
//! trusts), and a NATS operator with one account whose users sign in with `.creds`
//! files, as `nsc` would make them.
//!
//! The NATS JWTs are written here (a header, the claims, an Ed25519 signature by the
//! issuer's NKey): the crates that make them (`nats-jwt`) cannot give an account
//! JetStream limits, without which the account has no JetStream. The server checks
//! every one of them, so a mistake here fails the test rather than hiding.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};

/// PEM files in a scratch directory: `ca.pem` (the trusted authority), `server.pem` and
/// `server.key` (for the names given, signed by it), `client.pem` and `client.key` (a
/// service's client certificate, signed by it), `other-ca.pem` (an authority that signed
/// nothing the servers present).
pub struct Certificates {
    pub dir: PathBuf,
}

impl Certificates {
    /// A server certificate naming `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("crm-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("certificate dir");
        let (ca_pem, ca) = authority("crm test CA");
        let (other_pem, _) = authority("an authority nobody trusts");
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server names");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let client_key = KeyPair::generate().expect("client key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client
            .distinguished_name
            .push(DnType::CommonName, "crm-relay");
        let client = client
            .signed_by(&client_key, &ca)
            .expect("client certificate");
        for (name, text) in [
            ("ca.pem", ca_pem),
            ("other-ca.pem", other_pem),
            ("server.pem", cert.pem()),
            ("server.key", key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.join(name), text).expect("write a certificate");
        }
        Self { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed authority: its PEM and what signs with it.
fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

/// A NATS operator (trusted by the server by its public key) with one account that has
/// JetStream, and the system account JetStream needs, preloaded into the server's memory
/// resolver.
pub struct NatsOperator {
    operator: nkeys::KeyPair,
    account: nkeys::KeyPair,
    system: nkeys::KeyPair,
}

impl Default for NatsOperator {
    fn default() -> Self {
        Self {
            operator: nkeys::KeyPair::new_operator(),
            account: nkeys::KeyPair::new_account(),
            system: nkeys::KeyPair::new_account(),
        }
    }
}

impl NatsOperator {
    /// The server configuration lines that trust this operator and know its account.
    pub fn server_config(&self) -> String {
        let limits = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let account = jwt(
            &self.operator,
            &self.account.public_key(),
            "crm",
            json!({"type": "account", "version": 2, "limits": limits}),
        );
        let system = jwt(
            &self.operator,
            &self.system.public_key(),
            "SYS",
            json!({"type": "account", "version": 2}),
        );
        format!(
            "trusted_keys: [\"{operator}\"]\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {crm}: \"{account}\"\n  {sys}: \"{system}\"\n}}\n",
            operator = self.operator.public_key(),
            crm = self.account.public_key(),
            sys = self.system.public_key(),
        )
    }

    /// A `.creds` file for a new user of the account, written into `dir`.
    pub fn creds(&self, dir: &Path, user: &str) -> PathBuf {
        let key = nkeys::KeyPair::new_user();
        let token = jwt(
            &self.account,
            &key.public_key(),
            user,
            json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1}),
        );
        let seed = key.seed().expect("user seed");
        let path = dir.join(format!("{user}.creds"));
        std::fs::write(&path, creds_file(&token, &seed)).expect("write creds");
        path
    }
}

/// A NATS JWT: `issuer` vouches for `subject`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(json!({"typ": "JWT", "alg": "ed25519-nkey"}).to_string());
    let claims = json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": chrono::Utc::now().timestamp(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = b64.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign a NATS JWT");
    format!("{signed}.{}", b64.encode(signature))
}

/// The credentials file format of `nsc generate creds`.
fn creds_file(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}
