"""hoard.fuse"""
