//! Loading and reloading real certificates made by rcgen: every failure names its file, and a
//! failed reload keeps the certificate in use. The handshakes themselves are tested against
//! the real binary in `daemon/tests/tls.rs`.

use std::path::Path;

use super::*;

/// A fresh self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

fn write_pair(dir: &Path, name: &str, (cert, key): &(String, String)) -> TlsFiles {
    let files = TlsFiles {
        cert_file: dir.join(format!("{name}.crt")),
        key_file: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert_file, cert).unwrap();
    std::fs::write(&files.key_file, key).unwrap();
    files
}

fn leaf_sha256(cert_pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    Sha256::digest(der.as_ref())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn loads_a_certificate_and_reports_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    let files = write_pair(dir.path(), "a", &pair);
    let tls = ServerTls::load(&files).unwrap();
    let summary = tls.current();
    assert_eq!(summary.sha256, leaf_sha256(&pair.0));
    assert_eq!(summary.sha256.len(), 64);
    assert_eq!(summary.chain_len, 1);
}

#[test]
fn reload_swaps_the_certificate_and_a_failed_reload_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = self_signed();
    let b = self_signed();
    let tls = ServerTls::load(&write_pair(dir.path(), "a", &a)).unwrap();

    let files_b = write_pair(dir.path(), "b", &b);
    let reloaded = tls.reload(&files_b).unwrap();
    assert_eq!(reloaded.sha256, leaf_sha256(&b.0));
    assert_eq!(tls.current(), reloaded);

    std::fs::write(&files_b.cert_file, "not a certificate\n").unwrap();
    let error = tls.reload(&files_b).unwrap_err();
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
    assert_eq!(tls.current().sha256, leaf_sha256(&b.0));
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_pair(dir.path(), "a", &self_signed());
    std::fs::remove_file(&files.key_file).unwrap();
    let error = ServerTls::load(&files).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, TlsError::Read { what: "key", .. }),
        "{text}"
    );
    assert!(
        text.starts_with(&format!(
            "cannot read the TLS key file {}: ",
            files.key_file.display()
        )),
        "{text}"
    );
}

#[test]
fn a_file_without_the_expected_block_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();

    // The key where the certificate belongs, and the other way round.
    let swapped = write_pair(dir.path(), "swapped", &(key.clone(), cert.clone()));
    let text = ServerTls::load(&swapped).unwrap_err().to_string();
    assert!(
        text.starts_with(&format!(
            "the TLS certificate file {} holds no certificate",
            swapped.cert_file.display()
        )),
        "{text}"
    );

    let no_key = write_pair(dir.path(), "no-key", &(cert.clone(), cert.clone()));
    let text = ServerTls::load(&no_key).unwrap_err().to_string();
    assert!(
        text.starts_with(&format!(
            "the TLS key file {} holds no private key",
            no_key.key_file.display()
        )),
        "{text}"
    );

    let broken = cert.replace("-----END CERTIFICATE-----", "");
    let truncated = write_pair(dir.path(), "truncated", &(broken, key));
    let error = ServerTls::load(&truncated).unwrap_err();
    assert!(
        matches!(
            error,
            TlsError::Pem {
                what: "certificate",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&truncated.cert_file.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_key_that_does_not_fit_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = self_signed();
    let (_, key_b) = self_signed();
    let files = write_pair(dir.path(), "mixed", &(cert_a, key_b));
    let error = ServerTls::load(&files).unwrap_err();
    assert!(matches!(error, TlsError::Unusable { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "the TLS key in {} cannot serve the certificate in {}",
            files.key_file.display(),
            files.cert_file.display()
        )),
        "{text}"
    );
}
