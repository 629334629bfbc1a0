/* main_record: placeholder until the command is written. */
#include <stdio.h>
#include "main.h"

int main_record(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "edgerec record: not available in this build\n");
	return 1;
}
