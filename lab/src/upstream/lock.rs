//! One build per cache at a time.

use std::fs::File;
use std::path::Path;

use super::error::BuildError;

/// One build per cache at a time: a second `weft-lab build` (or a parallel test) waits.
pub fn lock_cache(cache: &Path) -> Result<nix::fcntl::Flock<File>, BuildError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = cache.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(BuildError::io("open", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            eprintln!(
                "waiting for another weft-lab build using {}…",
                cache.display()
            );
            Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| BuildError::io("lock", &path)(std::io::Error::from(e)))
        }
        Err((_, e)) => Err(BuildError::io("lock", &path)(std::io::Error::from(e))),
    }
}
