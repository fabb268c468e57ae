fn main() {
    let _ = hotline::sip::message::MAX_MESSAGE_SIZE;
}
