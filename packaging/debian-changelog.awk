# CHANGELOG.md to the Debian changelog format (deb-changelog(5)), the one
# changelog of the native package: "## VERSION - YYYY-MM-DD" starts an
# entry, "- " a change, an indented line continues it. maint is the
# Maintainer field. Usage: awk -v maint="NAME <ADDR>" -f debian-changelog.awk CHANGELOG.md
function close_entry() {
	if (date == "") return
	cmd = "date -u -R -d " date
	cmd | getline rfc
	close(cmd)
	printf "\n -- %s  %s\n\n", maint, rfc
	date = ""
}
/^## [0-9]/ {
	close_entry()
	version = $2
	date = $4
	printf "sekisho (%s) unstable; urgency=medium\n\n", version
	next
}
date != "" && /^- / { sub(/^- /, ""); print "  * " $0; next }
date != "" && /^  [^ ]/ { sub(/^  /, ""); print "    " $0; next }
END { close_entry() }
