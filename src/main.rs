//! The binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    crayon_export_bot::cli::main()
}
