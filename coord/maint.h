/*
 * coord/maint.h - `melbo-coord fsck`, `backup` and `restore` (coord/maint.c): the admin's tools
 * for a state directory, usable while the coordinator serves (fsck, backup). Each takes the
 * command's (argc, argv) with argv[0] its name and returns the exit status.
 */
#ifndef MELBO_COORD_MAINT_H
#define MELBO_COORD_MAINT_H

int melbo_coord_cmd_fsck(int argc, char **argv);
int melbo_coord_cmd_backup(int argc, char **argv);
int melbo_coord_cmd_restore(int argc, char **argv);

#endif
