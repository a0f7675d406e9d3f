"""codeblue.sim"""
