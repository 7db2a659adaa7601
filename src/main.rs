fn main() {
    std::process::exit(drplan::cli::main());
}
