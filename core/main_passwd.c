/* main_passwd: `edgerec passwd`: reads the console operator's new password
 * (asked twice without echo on a terminal, else one line of standard
 * input) and prints the configuration line that sets it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "crypto_password.h"
#include "main.h"

#define PASSWD_MIN_LEN 8
#define PASSWD_MAX_LEN 1024

static void passwd_usage(FILE *out)
{
	fprintf(out,
		"usage: edgerec passwd [--iterations N]\n"
		"\n"
		"Prints the line that sets the console operator's password, for edgerec.conf:\n"
		"  console.password_hash = \"pbkdf2-sha256$...\"\n"
		"The password is asked twice on a terminal, else read as one line of standard input.\n"
		"\n"
		"  --iterations N   PBKDF2-HMAC-SHA-256 rounds (default %lu)\n",
		CRYPTO_PASSWORD_ITERATIONS);
}

/* Reads one line into 'buf' (newline removed), without echo when stdin is
 * a terminal ('prompt' then goes to stderr). Returns 0 or -1. */
static int passwd_read(const char *prompt, char *buf, size_t len)
{
	struct termios was, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &was) == 0;
	if (tty) {
		fputs(prompt, stderr);
		fflush(stderr);
		quiet = was;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	char *got = fgets(buf, (int)len, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &was);
		fputc('\n', stderr);
	}
	if (!got)
		return -1;
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

int main_passwd(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "iterations", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ 0, 0, 0, 0 },
	};
	unsigned long iterations = CRYPTO_PASSWORD_ITERATIONS;
	char pw[PASSWD_MAX_LEN + 2], again[PASSWD_MAX_LEN + 2];
	int opt, status = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "i:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'i': {
			char *end;
			iterations = strtoul(optarg, &end, 10);
			if (*end || optarg[0] < '0' || optarg[0] > '9' || iterations < CRYPTO_PASSWORD_MIN_ITERATIONS ||
			    iterations > CRYPTO_PASSWORD_MAX_ITERATIONS) {
				fprintf(stderr, "edgerec passwd: --iterations must be %lu..%lu\n",
					CRYPTO_PASSWORD_MIN_ITERATIONS, CRYPTO_PASSWORD_MAX_ITERATIONS);
				return 2;
			}
			break;
		}
		case 'h': passwd_usage(stdout); return 0;
		default: passwd_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		passwd_usage(stderr);
		return 2;
	}
	if (passwd_read("New console password: ", pw, sizeof(pw)) < 0) {
		fprintf(stderr, "edgerec passwd: no password given\n");
		goto out;
	}
	if (strlen(pw) < PASSWD_MIN_LEN || strlen(pw) > PASSWD_MAX_LEN) {
		fprintf(stderr, "edgerec passwd: the password must be %d to %d characters\n", PASSWD_MIN_LEN,
			PASSWD_MAX_LEN);
		goto out;
	}
	if (isatty(STDIN_FILENO)) {
		if (passwd_read("Again: ", again, sizeof(again)) < 0 || strcmp(pw, again) != 0) {
			fprintf(stderr, "edgerec passwd: the two passwords differ\n");
			goto out;
		}
	}
	char *line = crypto_password_hash(pw, iterations);
	if (!line) {
		fprintf(stderr, "edgerec passwd: cannot hash the password\n");
		goto out;
	}
	printf("console.password_hash = \"%s\"\n", line);
	free(line);
	status = 0;
out:
	memset(pw, 0, sizeof(pw));
	memset(again, 0, sizeof(again));
	return status;
}
