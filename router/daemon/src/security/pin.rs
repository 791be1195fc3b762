//! SHA-256 pinning of the code ferryd loads: `sha256 = "<64 hex digits>"` on a
//! `[[cla]]` or an `[[app]]`. A file whose digest differs is not loaded.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A pinned digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Pin(pub [u8; 32]);

impl std::fmt::Debug for Sha256Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Why pinned code was not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    #[error("cannot read {path} to check its sha256: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} has sha256 {actual}, not the pinned {expected}: not loaded (replaced or damaged? update `sha256` if the new file is intended)")]
    Mismatch { path: PathBuf, expected: String, actual: String },
}

impl Sha256Pin {
    /// Parses 64 hex digits.
    pub fn parse(text: &str) -> Result<Sha256Pin, String> {
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{t}` is not a SHA-256 digest (64 hex digits; `sha256sum FILE` prints it)"));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Sha256Pin(out))
    }

    /// Checks `bytes`, read from `path`, against the pin.
    pub fn check(&self, path: &Path, bytes: &[u8]) -> Result<(), PinError> {
        let actual: [u8; 32] = Sha256::digest(bytes).into();
        if actual != self.0 {
            return Err(PinError::Mismatch { path: path.to_owned(), expected: hex(&self.0), actual: hex(&actual) });
        }
        Ok(())
    }

    /// Checks the file open as `file` (read from its start).
    pub fn check_file(&self, path: &Path, file: &mut std::fs::File) -> Result<(), PinError> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|source| PinError::Read { path: path.to_owned(), source })?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let actual: [u8; 32] = h.finalize().into();
        if actual != self.0 {
            return Err(PinError::Mismatch { path: path.to_owned(), expected: hex(&self.0), actual: hex(&actual) });
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_check() {
        // sha256("abc"), FIPS 180-2.
        let pin = Sha256Pin::parse("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap();
        assert!(pin.check(Path::new("x"), b"abc").is_ok());
        let e = pin.check(Path::new("x"), b"abd").unwrap_err().to_string();
        assert!(e.contains("not the pinned ba7816bf") && e.contains("not loaded"), "{e}");
        assert!(Sha256Pin::parse("ba78").is_err());
        assert!(Sha256Pin::parse(&"g".repeat(64)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert!(pin.check_file(&p, &mut std::fs::File::open(&p).unwrap()).is_ok());
    }
}
