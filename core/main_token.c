/* main_token: placeholder until the command is written. */
#include <stdio.h>
#include "main.h"

int main_token(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "edgerec token: not available in this build\n");
	return 1;
}
