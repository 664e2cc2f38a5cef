#!/usr/bin/perl
# Where `perl Makefile.PL ... && make && make install` puts the files, for
# every way of naming RT: a source install's RTHOME (relative paths under
# $BasePath, as RT 4, 5 and 6 write them), Debian's RTHOMEs (absolute
# paths), RT_PLUGIN_DIR, and none.  No server, no database: a copy of the
# distribution (as MANIFEST lists it) is configured and installed into
# temporary directories.  Where a real RT.pm is at hand, RT itself is asked
# for $LocalPluginPath with each fake Generated.pm, and must agree.
use strict;
use warnings;
use Test::More;
use Config;
use Cwd qw(abs_path realpath);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Find ();
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use FindBin;

my $ROOT = abs_path("$FindBin::Bin/..");
my $DIST = 'RT-Extension-HealthEndpoint';
my $MAKE = $Config{make} || 'make';
my $tmp  = realpath(tempdir('he-layout-XXXXXX', TMPDIR => 1, CLEANUP => 1));

# ---- the distribution, as shipped ------------------------------------------

my $src = "$tmp/src";
{
    open my $fh, '<', "$ROOT/MANIFEST" or die "MANIFEST: $!";
    while (my $f = <$fh>) {
        $f =~ s/\s.*//s;
        next unless length $f;
        make_path(dirname("$src/$f"));
        copy("$ROOT/$f", "$src/$f") or die "copy $f: $!";
    }
}

# run a command in the copy, with an environment free of the outer build's
# settings (make test sets PERL5LIB and MAKEFLAGS) plus %$env
sub run_in_src {
    my ($env, @cmd) = @_;
    local %ENV = %ENV;
    delete @ENV{qw(PERL5LIB PERL_MM_OPT PERL_MB_OPT MAKEFLAGS MAKELEVEL MFLAGS
                   RTHOME RT_PLUGIN_DIR)};
    @ENV{keys %$env} = values %$env;
    my $cmd = join ' ', map { "'$_'" } @cmd;
    my $out = `cd '$src' && $cmd 2>&1`;
    return ($? == 0, $out);
}

# perl Makefile.PL @args; returns (ok, output, { Makefile variables })
sub configure {
    my ($env, @args) = @_;
    unlink "$src/Makefile";
    my ($ok, $out) = run_in_src($env, $^X, 'Makefile.PL', @args);
    my %var;
    if ($ok && open my $fh, '<', "$src/Makefile") {
        while (<$fh>) {
            $var{$1} = $2 if /^(\w+) = (.*?)\s*$/;
        }
    }
    return ($ok, $out, \%var);
}

sub files_under {
    my ($dir) = @_;
    my @f;
    File::Find::find({ no_chdir => 1,
                       wanted => sub { push @f, $File::Find::name if -f } }, $dir)
        if -d $dir;
    return [sort @f];
}

# What a plugin install must consist of: the module and its shared object
# under lib/ (RT adds only lib/ to @INC), the man page under man/, nothing
# else (no .packlist, no perllocal.pod).
sub plugin_files {
    my ($top, $man3ext) = @_;
    return [sort "$top/lib/RT/Extension/HealthEndpoint.pm",
                 "$top/lib/auto/RT/Extension/HealthEndpoint/HealthEndpoint.$Config{dlext}",
                 "$top/man/man3/RT::Extension::HealthEndpoint.$man3ext"];
}

my $installs = 0;

# configure with @args, check the Makefile points into $plugins/$DIST, and
# unless $o{no_install}: make, make install DESTDIR=..., check the files
sub check_plugin_install {
    my ($plugins, $args, %o) = @_;
    my $top = "$plugins/$DIST";
    my ($ok, $out, $var) = configure($o{env} // {}, @$args);
    ok $ok, "perl Makefile.PL @$args" or return diag $out;
    like $out, qr/^Installing into \Q$top\E$/m, "it says: Installing into $top";
    is $var->{$_}, "$top/lib", "$_ is $top/lib"
        for qw(INSTALLSITELIB INSTALLSITEARCH);
    is $var->{INSTALLSITEMAN3DIR}, "$top/man/man3", "INSTALLSITEMAN3DIR is $top/man/man3";
    is $var->{INSTALLVENDORLIB}, "$top/lib", 'INSTALLDIRS=vendor would install there too';
    return $out if $o{no_install};

    ($ok, my $make) = run_in_src({}, $MAKE);
    ok $ok, 'make' or return diag $make;
    my $dest = $o{destdir} // "$tmp/destdir-" . ++$installs;
    ($ok, my $inst) = run_in_src({}, $MAKE, 'install',
                                 length $dest ? "DESTDIR=$dest" : ());
    ok $ok, 'make install' . (length $dest ? ' DESTDIR=...' : '') or return diag $inst;
    is_deeply files_under(length $dest ? $dest : $plugins),
              plugin_files("$dest$top", $var->{MAN3EXT}),
              "module, .so under lib/auto, man page under man/man3; nothing else"
        or diag $inst;
    return $out;
}

# ---- RT's own answer ---------------------------------------------------------

# Real RTs on this machine whose RT.pm loads with this perl
my @real_rt_libs = grep {
    -f "$_/RT.pm"
    && system("$^X -I'$_' -e 'require RT' >/dev/null 2>&1") == 0
} qw(/opt/rt6/lib /opt/rt5/lib /opt/rt4/lib
     /usr/share/request-tracker5/lib /usr/share/request-tracker4/lib);
note "RTs asked for their \$LocalPluginPath: @real_rt_libs" if @real_rt_libs;

# $RT::LocalPluginPath as RT $rt_lib computes it from $home's Generated.pm
# ($home/lib/RT.pm is a link to that RT's RT.pm, which loads Generated.pm
# from beside itself and then resolves the paths)
sub rt_says {
    my ($home, $rt_lib) = @_;
    my $link = "$home/lib/RT.pm";
    unlink $link;
    symlink "$rt_lib/RT.pm", $link or die "symlink: $!";
    local $ENV{PERL5LIB};
    delete $ENV{PERL5LIB};
    my $got = `$^X -I'$home/lib' -I'$rt_lib' -e 'require RT; print \$RT::LocalPluginPath' 2>/dev/null`;
    unlink $link;
    return $got;
}

sub rt_agrees {
    my ($home, $plugins) = @_;
    for my $rt_lib (@real_rt_libs) {
        is rt_says($home, $rt_lib), $plugins, "RT from $rt_lib agrees";
    }
}

# ---- fake source installs -----------------------------------------------------

# lib/RT/Generated.pm as RT's configure writes it (lib/RT/Generated.pm.in),
# with the default "relative" layout of RT 4.4, 5.0 and 6.0: $BasePath is
# the prefix, everything else relative to it.
my @GENERATED = (
    [BasePath => undef], [EtcPath => 'etc'], [BinPath => 'bin'],
    [SbinPath => 'sbin'], [VarPath => 'var'], [FontPath => 'share/fonts'],
    [LexiconPath => 'share/po'], [StaticPath => 'share/static'],
    [PluginPath => 'plugins'], [LocalPath => 'local'],
    [LocalEtcPath => 'local/etc'], [LocalLibPath => 'local/lib'],
    [LocalLexiconPath => 'local/po'], [LocalStaticPath => 'local/static'],
    [LocalPluginPath => 'local/plugins'], [MasonComponentRoot => 'share/html'],
    [MasonLocalComponentRoot => 'local/html'],
    [MasonDataDir => 'var/mason_data'], [MasonSessionDir => 'var/session_data'],
);

sub fake_rt_home {
    my ($home, %set) = @_;
    my $version = delete $set{version} // '6.0.0';
    make_path("$home/lib/RT", "$home/local/plugins", "$home/var/mason_data");
    open my $fh, '>', "$home/lib/RT/Generated.pm" or die $!;
    print $fh "package RT;\nuse warnings;\nuse strict;\n\n",
              "our \$VERSION = '$version';\n",
              "our (\$MAJOR_VERSION, \$MINOR_VERSION, \$REVISION) = ",
              "\$VERSION =~ /^(\\d)\\.(\\d)\\.(\\d+)/;\n\n";
    for (@GENERATED) {
        my ($k, $v) = @$_;
        $v = exists $set{$k} ? $set{$k} : $v // $home;
        # configure's own spacing for this one
        print $fh $k eq 'LocalLibPath' ? "\$$k        =    '$v';\n"
                                       : "\$$k = '$v';\n";
    }
    print $fh "\n1;\n";
    close $fh;
    return $home;
}

for my $v (qw(4.4.6 5.0.5 6.0.0)) {
    my ($major) = $v =~ /^(\d)/;
    subtest "RT $major source install: RTHOME=/opt/rt$major style" => sub {
        my $home = fake_rt_home("$tmp/rt$major", version => $v);
        my $plugins = "$home/local/plugins";
        # RT 4 and 5 differ from 6 only in RT's version: configure them
        # and check the Makefile, build and install one
        my $out = check_plugin_install($plugins, ["RTHOME=$home"],
                                       no_install => $major != 6);
        like $out // '', qr/\$LocalPluginPath = 'local\/plugins', relative to \$BasePath = '\Q$home\E'/,
            'it says how it got there';
        like $out // '', qr{rm -rf \Q$home\E/var/mason_data/obj}, 'and which Mason cache to clear';
        rt_agrees($home, $plugins);
    };
}

subtest '$BasePath through a symbolic link: RT resolves it' => sub {
    my $real = fake_rt_home("$tmp/rt6-real", BasePath => "$tmp/rt6-link");
    symlink 'rt6-real', "$tmp/rt6-link" or die $!;
    my $plugins = "$real/local/plugins";
    my $out = check_plugin_install($plugins, ["RTHOME=$tmp/rt6-link"], no_install => 1);
    like $out // '', qr/which RT takes as \Q$real\E \(symbolic links resolved\)/,
        'it says why';
    rt_agrees($real, $plugins);
};

subtest '$BasePath gone (RT moved, or built for a DESTDIR): the directory above lib/' => sub {
    my $home = fake_rt_home("$tmp/rt-moved", BasePath => "$tmp/no-such-dir");
    my $plugins = "$home/local/plugins";
    my $out = check_plugin_install($plugins, ["RTHOME=$home"], no_install => 1);
    like $out // '', qr/which RT takes as \Q$home\E \(not a directory/, 'it says why';
    rt_agrees($home, $plugins);
    check_plugin_install($plugins, ["RTHOME=$home/lib"], no_install => 1);
};

subtest 'RTHOME with an absolute $LocalPluginPath in a source layout' => sub {
    my $home = fake_rt_home("$tmp/rt-abs", LocalPluginPath => "$tmp/elsewhere/plugins");
    check_plugin_install("$tmp/elsewhere/plugins", ["RTHOME=$home"], no_install => 1);
    rt_agrees($home, "$tmp/elsewhere/plugins");
};

subtest 'RTHOME that RT itself would not resolve, or no RT at all' => sub {
    my $home = fake_rt_home("$tmp/rt-etcabs", EtcPath => '/etc/rt');
    my ($ok, $out) = configure({}, "RTHOME=$home");
    ok !$ok, 'relative $LocalPluginPath with an absolute $EtcPath: refused';
    like $out, qr/relative but\n\$EtcPath is absolute.*RT_PLUGIN_DIR/s, 'saying why'
        or diag $out;
    ok !-e "$src/Makefile", 'no Makefile';

    make_path("$tmp/not-rt/local");
    ($ok, $out) = configure({}, "RTHOME=$tmp/not-rt");
    ok !$ok, 'no lib/RT/Generated.pm: refused';
    like $out, qr/no lib\/RT\/Generated\.pm there/, 'saying why' or diag $out;
};

# ---- real RTs ------------------------------------------------------------------

# Debian's request-tracker4/5 (absolute paths throughout), and source
# installs at the usual places, if present.  make install goes to a DESTDIR.
for my $home (qw(/usr/share/request-tracker4 /usr/share/request-tracker5
                 /opt/rt4 /opt/rt5 /opt/rt6)) {
    next unless -f "$home/lib/RT/Generated.pm";
    subtest "RTHOME=$home" => sub {
        my ($rt_lib) = grep { $_ eq "$home/lib" } @real_rt_libs;
        plan skip_all => "$home/lib/RT.pm does not load with $^X" unless $rt_lib;
        local $ENV{PERL5LIB};
        delete $ENV{PERL5LIB};
        my $plugins = `$^X -I'$rt_lib' -e 'require RT; print \$RT::LocalPluginPath'`;
        ok length $plugins, "RT's \$LocalPluginPath: $plugins" or return;
        check_plugin_install($plugins, ["RTHOME=$home"]);
    };
}

# ---- RT_PLUGIN_DIR, the environment, site_perl -----------------------------------

subtest 'RT_PLUGIN_DIR=<relative dir> && make install (no DESTDIR)' => sub {
    check_plugin_install("$src/my-plugins", ['RT_PLUGIN_DIR=my-plugins'], destdir => '');
};

subtest 'RTHOME and RT_PLUGIN_DIR from the environment; the command line first' => sub {
    my $home = "$tmp/rt6";    # from the source-install subtest
    check_plugin_install("$home/local/plugins", [], env => { RTHOME => $home },
                         no_install => 1);
    check_plugin_install("$home/local/plugins", ["RTHOME=$home"],
                         env => { RT_PLUGIN_DIR => "$tmp/p1" }, no_install => 1);
    check_plugin_install("$tmp/p2", ["RT_PLUGIN_DIR=$tmp/p2"],
                         env => { RTHOME => $home }, no_install => 1);
};

subtest 'neither: site_perl, as MakeMaker chooses' => sub {
    for my $case ([{}, []], [{ RTHOME => "$tmp/rt6" }, ['RTHOME=']]) {
        my ($ok, $out, $var) = configure($case->[0], @{$case->[1]});
        ok $ok, "perl Makefile.PL @{$case->[1]}" or do { diag $out; next };
        like $out, qr/^Installing into site_perl/m, 'it says site_perl';
        unlike $var->{INSTALLSITELIB} // '', qr/\Q$DIST\E/, "INSTALLSITELIB: $var->{INSTALLSITELIB}";
    }
};

done_testing;
