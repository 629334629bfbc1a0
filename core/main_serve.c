/* main_serve: placeholder until the command is written. */
#include <stdio.h>
#include "main.h"

int main_serve(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "edgerec serve: not available in this build\n");
	return 1;
}
