//! `pseg-slurm`: dispatch only; every command is in `pseg_slurm::cmd`.

fn main() -> std::process::ExitCode {
    pseg_slurm::cmd::pseg_slurm()
}
