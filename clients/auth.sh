# Sourced by clients/run-smoke.sh and clients/pair.sh: the brokers they start refuse anonymous
# CONNECTs and know one user, so every example and test that reaches them proves it sends
# login and passcode (docs/security.md).
#
#   random_passcode                          a fresh passcode on stdout (24 hex digits)
#   check_credential NAME VALUE              exit 2 unless VALUE is non-empty and plain
#   write_auth_config BIN LOGIN PASSCODE FILE
#                                            FILE: [security] with anonymous = false and LOGIN
#                                            (group "app"), its hash made by `BIN passwd`

random_passcode() {
  od -An -N12 -tx1 /dev/urandom | tr -d ' \n'
}

# The login goes into TOML and both go into pair.env, which shells source and tests split at
# the first '='; keeping them to these characters means neither needs quoting anywhere.
check_credential() {
  if [[ ! "$2" =~ ^[A-Za-z0-9._~-]+$ ]]; then
    echo "$1 must be non-empty and use only A-Z a-z 0-9 . _ ~ -" >&2
    exit 2
  fi
}

# Only the argon2id hash is written; the passcode reaches `stompbox passwd` on a pipe, never
# a command line or a file.
write_auth_config() {
  local bin="$1" login="$2" passcode="$3" file="$4" hash
  hash="$(printf '%s\n' "$passcode" | "$bin" passwd)"
  if [[ "$hash" != '$argon2'* ]]; then
    echo "$bin passwd printed no argon2 hash: $hash" >&2
    return 1
  fi
  cat >"$file" <<TOML
[security]
anonymous = false
users = [{ login = "$login", password_hash = '$hash', groups = ["app"] }]
TOML
}
