// Package installer is a curtin-compatible installer: it performs `curtin install` (stages,
// sources, storage, hooks, curthooks, reporting) against a Backend of real block devices or
// disk-image files.
package installer
