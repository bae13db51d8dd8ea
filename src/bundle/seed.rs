//! Session seeds from bundle files: what the pool installs into a work dir that is not logged in.

use std::path::Path;

use super::{BundleError, Limits, import, is_logged_in, read_input};

/// Seeds a logged-out work dir from a bundle file (the pool's session seeds). A logged-in work dir
/// is left alone. The bundle must not be encrypted: `serve` decrypts seeds once at start.
pub fn seed_from_file(bundle: &Path, work_dir: &Path) -> Result<bool, BundleError> {
    if is_logged_in(work_dir) {
        return Ok(false);
    }
    let limits = Limits::default();
    let input = read_input(bundle, limits)?;
    import(&input, work_dir, None, false, limits)?;
    Ok(true)
}
