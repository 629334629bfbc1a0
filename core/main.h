/* main: the command-line front ends of the edgerec executable. Each command
 * lives in main_<command>.c and returns the process exit status. */
#ifndef EDGEREC_MAIN_H
#define EDGEREC_MAIN_H

/* edgerec record: records one clip with the media engine (main_record.c). */
int main_record(int argc, char **argv);
/* edgerec serve: runs the appliance (main_serve.c). */
int main_serve(int argc, char **argv);
/* edgerec token: mints a development JWT (main_token.c). */
int main_token(int argc, char **argv);
/* edgerec passwd: the console operator's password hash line (main_passwd.c). */
int main_passwd(int argc, char **argv);

#endif
