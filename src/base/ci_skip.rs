//! Skipping a test that cannot run on this machine (it needs root, cgroups, Slurm...), for
//! unit and integration tests alike. Under `CI=true` a skip is a failure: CI provides
//! everything the tests need, so a test that cannot run there panics with the reason.
//! Elsewhere the skip is a loud line on stderr. Test support only (hidden from the docs);
//! nothing in the program calls it.

/// Whether this run is CI's (`CI=true`), where nothing may be skipped.
fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True when `ready`; otherwise skips `test`, which `needs` something this machine lacks:
/// panics under `CI=true`, else says so loudly and returns false (the test then returns).
pub fn runs(test: &str, ready: bool, needs: &str) -> bool {
    if !ready {
        skip(test, needs);
    }
    ready
}

/// Skips `test` because it `needs` something this machine lacks: panics under `CI=true`,
/// else says so loudly on stderr.
pub fn skip(test: &str, needs: &str) {
    let msg = format!("######## SKIPPED {test}: {needs} ########");
    if under_ci() {
        panic!("{msg} (CI=true: a skip is a failure)");
    }
    eprintln!("{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_that_can_run_runs() {
        assert!(runs("t", true, "nothing"));
    }

    #[test]
    fn a_skip_fails_under_ci_and_only_there() {
        let skipped = std::panic::catch_unwind(|| runs("ci_skip_self_test", false, "root"));
        if under_ci() {
            let message = skipped.expect_err("a skip under CI=true must fail");
            let text = message
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert!(text.contains("SKIPPED ci_skip_self_test: root"), "{text}");
            assert!(text.contains("CI=true"), "{text}");
        } else {
            assert_eq!(skipped.ok(), Some(false));
        }
    }
}
