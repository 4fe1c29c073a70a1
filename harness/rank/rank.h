/* The rank process: runs one case's share on one rank and reports to the launcher. */
#ifndef MOE_RANK_H
#define MOE_RANK_H

/* Entry point of `moebench __rank` (exec'd by the launcher; not for users). Returns the exit code. */
int moe_rank_main(void);

#endif
