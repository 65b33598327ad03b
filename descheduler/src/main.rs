#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    realload_descheduler::run::main()
}
