//! `tgbot -c tgbot.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<tgbot::Config, _, _>("tgbot", tgbot::run)
}
