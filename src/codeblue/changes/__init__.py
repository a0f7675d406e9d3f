"""codeblue.changes"""
