fn main() {
    std::process::exit(release::run(std::env::args_os()));
}
