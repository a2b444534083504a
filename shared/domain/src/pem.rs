//! PEM normalisation.
//!
//! istiod hot-reloads a new intermediate only when `root-cert.pem` is byte-identical to what it
//! already has, so every PEM we store or write goes through [`normalise`] exactly once: LF line
//! endings, 64-column base64, no text outside the blocks, one trailing newline.

use pem::{EncodeConfig, LineEnding, Pem};

/// Text that is not the PEM it should be.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// Not PEM at all.
    #[error("{what} is not valid PEM: {source}")]
    Malformed {
        /// Which file or field.
        what: String,
        /// What the parser said.
        source: pem::PemError,
    },
    /// PEM without the block wanted.
    #[error("{what} holds no {label} block")]
    Empty {
        /// Which file or field.
        what: String,
        /// The block wanted.
        label: &'static str,
    },
    /// A block of another kind where one kind belongs (a key where a certificate should be).
    #[error("{what} holds a {found} block where a {expected} block belongs")]
    WrongLabel {
        /// Which file or field.
        what: String,
        /// The block wanted.
        expected: &'static str,
        /// The block found.
        found: String,
    },
}

/// The PEM label of a certificate.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// The PEM label of a PKCS#8 private key.
pub const PRIVATE_KEY: &str = "PRIVATE KEY";

fn config() -> EncodeConfig {
    EncodeConfig::new().set_line_ending(LineEnding::LF)
}

/// Parses every block in `text`, requiring at least one and all of them labelled `label`.
pub fn parse_blocks(what: &str, text: &str, label: &'static str) -> Result<Vec<Pem>, PemError> {
    // The pem crate accepts CRLF input; strip CR anyway so odd mixes parse too.
    let cleaned = text.replace('\r', "");
    let blocks = pem::parse_many(cleaned.as_bytes()).map_err(|source| PemError::Malformed {
        what: what.to_string(),
        source,
    })?;
    if blocks.is_empty() {
        return Err(PemError::Empty {
            what: what.to_string(),
            label,
        });
    }
    if let Some(other) = blocks.iter().find(|b| b.tag() != label) {
        return Err(PemError::WrongLabel {
            what: what.to_string(),
            expected: label,
            found: other.tag().to_string(),
        });
    }
    Ok(blocks)
}

/// DER of every certificate in `text`, in order.
pub fn certificates(what: &str, text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    Ok(parse_blocks(what, text, CERTIFICATE)?
        .into_iter()
        .map(Pem::into_contents)
        .collect())
}

/// Encodes DER blocks as one normalised PEM text.
pub fn encode(label: &str, ders: &[impl AsRef<[u8]>]) -> String {
    ders.iter()
        .map(|d| pem::encode_config(&Pem::new(label, d.as_ref().to_vec()), config()))
        .collect()
}

/// Re-encodes `text` in the one canonical form; the labels are kept.
pub fn normalise(what: &str, text: &str, label: &'static str) -> Result<String, PemError> {
    let blocks = parse_blocks(what, text, label)?;
    Ok(blocks
        .iter()
        .map(|b| pem::encode_config(b, config()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "MIIBszCCAVmgAwIBAgIUJ3Q=";

    fn block(eol: &str) -> String {
        format!("-----BEGIN CERTIFICATE-----{eol}{BODY}{eol}-----END CERTIFICATE-----")
    }

    #[test]
    fn normalises_crlf_missing_newline_and_surrounding_text() {
        let crlf = format!("subject=CN foo\r\n{}\r\n\r\n", block("\r\n"));
        let bare = block("\n");
        let a = normalise("x", &crlf, CERTIFICATE).unwrap();
        let b = normalise("x", &bare, CERTIFICATE).unwrap();
        assert_eq!(a, b);
        assert!(a.ends_with("-----END CERTIFICATE-----\n") && !a.ends_with("\n\n"));
        assert!(!a.contains('\r') && !a.contains("subject"));
        assert_eq!(normalise("x", &a, CERTIFICATE).unwrap(), a, "idempotent");
    }

    #[test]
    fn concatenated_blocks_without_newline_between_are_split() {
        let two = format!("{}{}", block("\n"), block("\n"));
        assert_eq!(certificates("chain", &two).unwrap().len(), 2);
    }

    #[test]
    fn rejects_empty_and_wrong_label() {
        assert!(matches!(
            certificates("x", "hello"),
            Err(PemError::Empty { .. })
        ));
        let key = encode(PRIVATE_KEY, &[[0u8; 3]]);
        let err = certificates("root-cert.pem", &key).unwrap_err().to_string();
        assert!(
            err.contains("root-cert.pem holds a PRIVATE KEY block"),
            "{err}"
        );
    }
}
