"""codeblue.oncall"""
