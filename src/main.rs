//! The `fluxo` command: parses flags and hands over to [`fluxo::cli`].

fn main() -> std::process::ExitCode {
    fluxo::cli::main()
}
