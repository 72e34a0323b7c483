//! `pseg-step`: dispatch only; the command is in `pseg_slurm::cmd`, the engine in
//! `pseg_slurm::domain::step`.

fn main() -> std::process::ExitCode {
    pseg_slurm::cmd::pseg_step()
}
