//! Author keys: [`Keypair`] (signs) and [`PublicKey`] (names an author), their text form
//! `<base64>.ed25519` and ssb-keys key files (`docs/PROTOCOL.md` §1).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use std::{fmt, path::Path, str::FromStr};

const SUFFIX: &str = ".ed25519";

/// An author's ed25519 public key: the `author` of every envelope it signs.
///
/// Its text form is standard base64 (with padding) of the 32 bytes followed by `.ed25519`.
/// Parsing is strict (the text must re-encode to itself) and accepts a leading `@`, the ssb
/// id form. Parsing checks the encoding only; whether the point is a usable key is decided
/// when a signature is verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key with these 32 bytes (RFC 8032 encoding).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// The 32 bytes (RFC 8032 encoding).
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ssb id form: `@<base64>.ed25519`.
    pub fn to_ssb_id(&self) -> String {
        format!("@{self}")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SUFFIX}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_suffixed(text.strip_prefix('@').unwrap_or(text), "public key")?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyError::Length {
            what: "public key",
            expected: 32,
            actual: b.len(),
        })?;
        Ok(PublicKey(bytes))
    }
}

/// Decodes `<strict standard base64>.ed25519`.
fn decode_suffixed(text: &str, what: &'static str) -> Result<Vec<u8>, KeyError> {
    let body = text.strip_suffix(SUFFIX).ok_or(KeyError::Suffix { what })?;
    let bytes = STANDARD
        .decode(body)
        .map_err(|_| KeyError::Base64 { what })?;
    // The decoder tolerates non-zero trailing bits; the text form must re-encode to itself.
    if STANDARD.encode(&bytes) != body {
        return Err(KeyError::Base64 { what });
    }
    Ok(bytes)
}

/// An author's signing key.
///
/// Every envelope this node publishes is signed with it. It may be the node's libp2p identity
/// key ([`Keypair::try_from_libp2p`]) or a separate key, e.g. one kept in an ssb-keys file.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A new random keypair from the operating system's random source.
    pub fn generate() -> Self {
        let libp2p = libp2p::identity::ed25519::Keypair::generate();
        Keypair::from(&libp2p)
    }

    /// The keypair of this 32-byte RFC 8032 secret key (seed).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte RFC 8032 secret key (seed). Keep it secret.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The author key of this keypair.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message` (pure Ed25519, RFC 8032).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The ed25519 key of a libp2p identity, so a node may sign with its transport key.
    ///
    /// Fails for identities of another key type.
    pub fn try_from_libp2p(keypair: &libp2p::identity::Keypair) -> Result<Self, KeyError> {
        let ed = keypair
            .clone()
            .try_into_ed25519()
            .map_err(|_| KeyError::NotEd25519)?;
        Ok(Keypair::from(&ed))
    }

    /// The same key as a libp2p identity, e.g. to use it as the node's transport key too.
    pub fn to_libp2p(&self) -> libp2p::identity::Keypair {
        let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(self.seed())
            .expect("32 bytes are a valid ed25519 secret key");
        libp2p::identity::ed25519::Keypair::from(secret).into()
    }

    /// The ssb-keys JSON object `{curve, public, private, id}` (`private` is base64 of
    /// seed ‖ public, with the `.ed25519` suffix).
    pub fn to_ssb_json(&self) -> String {
        let public = self.public();
        let mut secret = self.seed().to_vec();
        secret.extend_from_slice(public.as_bytes());
        format!(
            "{{\n  \"curve\": \"ed25519\",\n  \"public\": \"{public}\",\n  \"private\": \"{}{SUFFIX}\",\n  \"id\": \"{}\"\n}}",
            STANDARD.encode(&secret),
            public.to_ssb_id()
        )
    }

    /// A whole ssb-keys key file, laid out as ssb-keys 4.x writes it: `#` comment lines, the
    /// JSON object, then `#` lines naming the public id.
    pub fn to_key_file(&self) -> String {
        format!(
            "# this is your SECRET name.\n\
             # this name gives you magical powers.\n\
             # with it you can mark your messages so that your friends can verify\n\
             # that they really did come from you.\n\
             #\n\
             # if any one learns this name, they can use it to destroy your identity\n\
             # NEVER show this to anyone!!!\n\n{}\n\n\
             # WARNING! It's vital that you DO NOT edit OR share your secret name\n\
             # instead, share your public name\n\
             # your public name: {}",
            self.to_ssb_json(),
            self.public().to_ssb_id()
        )
    }

    /// Reads an ssb-keys key file's text: every line starting with `#` is dropped, the rest
    /// must be the JSON object. `curve` must be `ed25519`, `private` must hold seed ‖ public,
    /// and `public` (and `id`, when present) must name the same key.
    pub fn from_key_file(text: &str) -> Result<Self, KeyError> {
        let json: String = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| KeyError::Json(e.to_string()))?;
        let field = |name: &'static str| -> Result<Option<&str>, KeyError> {
            match value.get(name) {
                None => Ok(None),
                Some(v) => v.as_str().map(Some).ok_or(KeyError::Field {
                    field: name,
                    problem: "is not a string",
                }),
            }
        };
        let required = |name: &'static str| {
            field(name)?.ok_or(KeyError::Field {
                field: name,
                problem: "is missing",
            })
        };
        if required("curve")? != "ed25519" {
            return Err(KeyError::Field {
                field: "curve",
                problem: "is not \"ed25519\"",
            });
        }
        let private = decode_suffixed(required("private")?, "private key")?;
        if private.len() != 64 {
            return Err(KeyError::Length {
                what: "private key",
                expected: 64,
                actual: private.len(),
            });
        }
        let seed: [u8; 32] = private[..32].try_into().expect("64 bytes split in two");
        let keypair = Keypair::from_seed(&seed);
        let public = keypair.public();
        if private[32..] != public.as_bytes()[..] {
            return Err(KeyError::Mismatch {
                field: "private",
                problem: "its second half is not the public key of its seed",
            });
        }
        if required("public")?.parse::<PublicKey>()? != public {
            return Err(KeyError::Mismatch {
                field: "public",
                problem: "does not match the private key",
            });
        }
        if let Some(id) = field("id")?
            && (!id.starts_with('@') || id.parse::<PublicKey>()? != public)
        {
            return Err(KeyError::Mismatch {
                field: "id",
                problem: "is not \"@\" followed by the public key",
            });
        }
        Ok(keypair)
    }

    /// Reads an ssb-keys key file from disk.
    pub fn read_key_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| KeyError::Io {
            path: path.as_ref().display().to_string(),
            error: e.to_string(),
        })?;
        Keypair::from_key_file(&text)
    }

    /// Writes this keypair as an ssb-keys key file. The file is created new (an existing file
    /// is never overwritten) and, on Unix, readable by its owner only.
    pub fn write_key_file(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        use std::io::Write as _;
        let path = path.as_ref();
        let io = |e: std::io::Error| KeyError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(self.to_key_file().as_bytes()).map_err(io)
    }

    /// Reads the key file at `path`, or creates it with a new key if there is no file.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        if path.exists() {
            return Keypair::read_key_file(path);
        }
        let keypair = Keypair::generate();
        keypair.write_key_file(path)?;
        Ok(keypair)
    }
}

impl From<SigningKey> for Keypair {
    fn from(signing: SigningKey) -> Self {
        Keypair { signing }
    }
}

impl From<&libp2p::identity::ed25519::Keypair> for Keypair {
    fn from(keypair: &libp2p::identity::ed25519::Keypair) -> Self {
        let bytes = keypair.to_bytes();
        let seed: [u8; 32] = bytes[..32].try_into().expect("seed is 32 bytes");
        Keypair::from_seed(&seed)
    }
}

/// What is wrong with a key, a key's text form or a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The text does not end in `.ed25519`.
    Suffix {
        /// Which key was being read.
        what: &'static str,
    },
    /// The text is not strict standard base64 with padding that re-encodes to itself.
    Base64 {
        /// Which key was being read.
        what: &'static str,
    },
    /// The key has the wrong number of bytes.
    Length {
        /// Which key was being read.
        what: &'static str,
        /// The number of bytes it must have.
        expected: usize,
        /// The number of bytes it has.
        actual: usize,
    },
    /// The key file, without its `#` lines, is not JSON.
    Json(String),
    /// A field of the key file is missing, of the wrong type or has a wrong value.
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two fields of the key file name different keys.
    Mismatch {
        /// The field that disagrees.
        field: &'static str,
        /// How it disagrees.
        problem: &'static str,
    },
    /// The libp2p identity is not an ed25519 key.
    NotEd25519,
    /// The key file could not be read or written.
    Io {
        /// The file's path.
        path: String,
        /// The operating system's error.
        error: String,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Suffix { what } => write!(f, "{what} does not end in \"{SUFFIX}\""),
            KeyError::Base64 { what } => {
                write!(f, "{what} is not canonical standard base64 with padding")
            }
            KeyError::Length {
                what,
                expected,
                actual,
            } => write!(f, "{what} is {actual} bytes, expected {expected}"),
            KeyError::Json(e) => write!(f, "key file is not a JSON object: {e}"),
            KeyError::Field { field, problem } => write!(f, "key file field \"{field}\" {problem}"),
            KeyError::Mismatch { field, problem } => {
                write!(f, "key file field \"{field}\" {problem}")
            }
            KeyError::NotEd25519 => write!(f, "the libp2p identity is not an ed25519 key"),
            KeyError::Io { path, error } => write!(f, "key file {path}: {error}"),
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_and_a_tampered_one_says_what_is_wrong() {
        let keys = Keypair::from_seed(&[7; 32]);
        let file = keys.to_key_file();
        assert_eq!(
            Keypair::from_key_file(&file).unwrap().public(),
            keys.public()
        );

        let other = Keypair::from_seed(&[8; 32]).public().to_string();
        let swapped = file.replacen(
            &format!("\"{}\"", keys.public()),
            &format!("\"{other}\""),
            1,
        );
        assert_eq!(
            Keypair::from_key_file(&swapped).unwrap_err(),
            KeyError::Mismatch {
                field: "public",
                problem: "does not match the private key"
            }
        );
        let err = Keypair::from_key_file("# only comments\n").unwrap_err();
        assert!(matches!(err, KeyError::Json(_)), "{err}");
        let err = Keypair::from_key_file(&file.replace("\"ed25519\",", "\"k256\",")).unwrap_err();
        assert!(err.to_string().contains("curve"), "{err}");
    }

    #[test]
    fn libp2p_identity_keys_sign_as_the_same_author() {
        let keys = Keypair::from_seed(&[3; 32]);
        let libp2p = keys.to_libp2p();
        assert_eq!(
            Keypair::try_from_libp2p(&libp2p).unwrap().public(),
            keys.public()
        );
        assert_ne!(Keypair::generate().public(), Keypair::generate().public());
    }
}
