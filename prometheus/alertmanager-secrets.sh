#!/bin/sh
# Copy an Alertmanager config with each `@file:PATH@` placeholder replaced by the content
# of PATH (a secret file: a Docker secret, a file readable only by the alertmanager user).
# Alertmanager 0.25 (Debian 12) reads the Telegram bot token only inline; this keeps the
# token out of the repository and out of the shipped file. POSIX sh: runs in the
# prom/alertmanager image (busybox) and on Debian (e.g. systemd ExecStartPre=).
#
#   alertmanager-secrets.sh IN OUT
#
# OUT is written with mode 600. The config's relative `templates/*.tmpl` resolves next to
# OUT, so OUT's directory gets a `templates` link to IN's when they differ.
set -eu

die() { echo "alertmanager-secrets.sh: $*" >&2; exit 1; }

[ "$#" -eq 2 ] || die "usage: alertmanager-secrets.sh IN OUT (e.g. /etc/alertmanager/alertmanager.yml /run/alertmanager/alertmanager.yml)"
in=$1
out=$2
[ -r "$in" ] || die "$in: cannot read the config to copy"
in_dir=$(cd "$(dirname "$in")" && pwd)
out_dir=$(mkdir -p "$(dirname "$out")" && cd "$(dirname "$out")" && pwd)
[ "$in_dir/$(basename "$in")" != "$out_dir/$(basename "$out")" ] || die "$out: OUT must differ from IN"

umask 077
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cp "$in" "$tmp"

# Placeholders outside comments (the comments may describe them).
for placeholder in $(grep -v '^[[:space:]]*#' "$in" | grep -o '@file:[^@[:space:]]*@' | sort -u); do
  path=${placeholder#@file:}
  path=${path%@}
  line=$(grep -n -F "$placeholder" "$in" | grep -v '^[0-9]*:[[:space:]]*#' | head -n 1 | cut -d: -f1)
  [ -r "$path" ] || die "$in line $line: secret file $path is missing or unreadable: create it (one line) or mount the secret there"
  value=$(cat "$path")
  [ -n "$value" ] || die "$path (for $in line $line): the secret file is empty: write the secret into it"
  case $value in
    *[!A-Za-z0-9:_.+/=-]*)
      die "$path (for $in line $line): expected one line of letters, digits and :_.+/=- (a Telegram bot token looks like 123456789:AAE...); fix the file" ;;
  esac
  pattern=$(printf '%s' "$placeholder" | sed 's/[].[*^$\\/|]/\\&/g')
  escaped=$(printf '%s' "$value" | sed 's/[/|&\\]/\\&/g')
  sed "/^[[:space:]]*#/!s|$pattern|$escaped|g" "$tmp" > "$tmp.next"
  mv "$tmp.next" "$tmp"
done

mv "$tmp" "$out"
trap - EXIT
if [ "$in_dir" != "$out_dir" ] && [ -d "$in_dir/templates" ]; then
  ln -sfn "$in_dir/templates" "$out_dir/templates"
fi
