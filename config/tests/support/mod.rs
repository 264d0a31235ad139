//! What the configuration tests share: a figment `Jail` with an empty environment, and the
//! overrides that name a configuration file.

use std::path::PathBuf;

use chatd_config::Overrides;
use figment::Jail;

/// Runs `test` in a figment `Jail`: a temporary working directory and an environment without
/// any variable, so `CHATD_*` of the machine cannot leak in.
#[expect(
    clippy::result_large_err,
    reason = "Jail fixes the closure's error type"
)]
pub(crate) fn jail(test: impl FnOnce(&mut Jail)) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        test(jail);
        Ok(())
    });
}

/// Overrides that load the file at `path` and nothing else.
pub(crate) fn with_file(path: &str) -> Overrides {
    Overrides {
        config_file: Some(PathBuf::from(path)),
        ..Overrides::default()
    }
}
