//! Secrets generated into the data dir on the embedded default, so `ca-connector serve` works in
//! an empty folder. Files are created with mode 0600 (the folder 0700) and reused on later starts.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use schema::KeyRing;
use secrecy::{ExposeSecret, SecretString};

pub const JWT_SECRET_FILE: &str = "jwt-secret";
pub const ENCRYPTION_KEYS_FILE: &str = "encryption-keys";

pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))
}

/// Reads the file, or creates it with `make()` when it does not exist yet. Returns the value and
/// a note for the start-up warning.
fn read_or_create(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> SecretString,
) -> Result<(SecretString, String), String> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(content) => {
            return Ok((
                SecretString::from(content.trim().to_string()),
                format!("{} (read back)", path.display()),
            ))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot read {}: {e}", path.display()))
        }
        Err(_) => {}
    }
    let value = make();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(value.expose_secret().as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((value, format!("{} (generated)", path.display())))
}

pub fn jwt_secret(dir: &Path) -> Result<(SecretString, String), String> {
    read_or_create(dir, JWT_SECRET_FILE, || {
        let mut bytes = [0u8; 48];
        rand::thread_rng().fill_bytes(&mut bytes);
        SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
    })
}

pub fn encryption_keys(dir: &Path) -> Result<(SecretString, String), String> {
    read_or_create(dir, ENCRYPTION_KEYS_FILE, || KeyRing::generate_spec("dev1"))
}

/// Creates the SQLite file with mode 0600 before SQLite does (it would use the umask, usually
/// 0644); SQLite gives its -wal and -shm files the same mode as the database file.
pub fn ensure_private_file(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}
