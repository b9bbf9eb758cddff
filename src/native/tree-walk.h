/* The walk mode of userns-helper (tree-walk.c, --mode=walk): reads a job on fd 0, writes records on fd 1,
   returns the exit status. */
#ifndef USERNS_TREE_WALK_H
#define USERNS_TREE_WALK_H
int tree_walk_main(void);
#endif
