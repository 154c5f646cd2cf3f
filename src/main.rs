fn main() -> std::process::ExitCode {
    pairjail::cli::run()
}
