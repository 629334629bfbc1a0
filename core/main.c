/* main: dispatches to the command front ends; nothing else lives here. */
#include <stdio.h>
#include <string.h>

#include "common_log.h"
#include "common_version.h"
#include "main.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} commands[] = {
	{ "serve", main_serve, "run the recording appliance (HTTPS API, WebSocket events)" },
	{ "record", main_record, "record one clip from a source to a file" },
	{ "token", main_token, "mint a development token from the configured secret" },
	{ "passwd", main_passwd, "print the configuration line that sets the console's password" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: edgerec <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\n'edgerec <command> --help' describes a command's options; "
		     "'edgerec --version' names the build.\n");
}

int main(int argc, char **argv)
{
	log_set_level(-1);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("edgerec %s%s%s%s\n", common_version, common_version_git[0] ? " (" : "", common_version_git,
		       common_version_git[0] ? ")" : "");
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "edgerec: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
