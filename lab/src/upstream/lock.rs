//! One build per component at a time (a long e2e build must not hold up a `lab up` whose
//! parts are cached).

use std::fs::File;
use std::path::Path;

use super::error::BuildError;

/// One build of a component at a time: a second `weft-lab build` of it (or a parallel test)
/// waits. `dir` is the component's cache directory; the lock file sits beside it.
pub fn lock_component(dir: &Path) -> Result<nix::fcntl::Flock<File>, BuildError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.with_extension("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(BuildError::io("open", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            eprintln!("waiting for another weft-lab build of {}…", dir.display());
            Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| BuildError::io("lock", &path)(std::io::Error::from(e)))
        }
        Err((_, e)) => Err(BuildError::io("lock", &path)(std::io::Error::from(e))),
    }
}
